"""The action interface: what every built-in and plug-in action implements.

An action is a small class registered under a dotted name. The executor
renders the step's arguments, validates them against ``args_schema`` and then
calls ``plan()`` (dry-run, or to show the operator what will change) or
``run()``. Actions never print: everything they have to say goes into the
``Result`` they return or the exception they raise.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable

from engine.errors import ActionError

__all__ = ["Action", "ActionError", "Context", "Result"]


@dataclass(frozen=True)
class Result:
    """The outcome of one action run.

    ``data`` is exposed to templates through ``register``: ``x.rc``,
    ``x.rows`` ... next to the standard keys ``ok``, ``changed``, ``failed``,
    ``skipped``, ``elapsed`` and ``message``.
    """

    ok: bool = True
    changed: bool = False
    data: dict = field(default_factory=dict)
    message: str = ""


class Context:
    """What an action may use while it runs.

    One Context per run; actions read ``dry_run``, ``deadline`` and
    ``cancelled`` and share expensive clients through ``connection()``.
    """

    def __init__(self, *, dry_run: bool = False, redactor=None, state_dir=None,
                 run_id: str = "", operator: str = "", guide=None, runbook=None) -> None:
        self.dry_run = dry_run
        self.redactor = redactor
        self.state_dir = state_dir
        self.run_id = run_id
        self.operator = operator
        self.cancelled = threading.Event()
        self._connections: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._processes: set = set()
        #: the operator side (engine.guide.operator.Guide), for manual and approve steps
        self.guide = guide
        #: the compiled runbook being run (engine.source.model.Runbook), for actions that
        #: read runbook-level definitions (the notify family reads its ``messages``)
        self.runbook = runbook

    # --- per-step deadline (thread-local: parallel steps have their own) ---
    @property
    def deadline(self) -> float | None:
        """``time.monotonic()`` value by which the current step must end, or None."""
        return getattr(self._local, "deadline", None)

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self._local.deadline = value

    def time_left(self, default: float | None = None) -> float | None:
        """Seconds left before the step's deadline (never negative), else ``default``."""
        if self.deadline is None:
            return default
        left = max(0.0, self.deadline - time.monotonic())
        return left if default is None else min(left, default)

    # --- expressions in the step's scope (for assert-like actions) ---
    def evaluate(self, expression, extra: dict | None = None) -> bool:
        """Truth of a bare expression in the current step's variable scope, with the
        names in ``extra`` added (e.g. ``object``: what a wait action just read)."""
        evaluator = getattr(self._local, "evaluator", None)
        if evaluator is None:
            raise RuntimeError("no step is running in this thread")
        return evaluator(expression, extra) if extra else evaluator(expression)

    def bind_step(self, deadline: float | None, evaluator, step=None, ref=None,
                  target: dict | None = None, variables: dict | None = None) -> None:
        """Called by the executor before each action (and each plan): sets the step's
        deadline, scope, the inventory target it acts on and its variables."""
        self._local.deadline = deadline
        self._local.evaluator = evaluator
        self._local.step = step
        self._local.ref = ref
        self._local.target = target
        self._local.variables = variables

    @property
    def variables(self) -> dict:
        """The variables in the current step's scope (read them, never change them): for
        actions that render templates of their own, such as the runbook's messages."""
        return getattr(self._local, "variables", None) or {}

    @property
    def target(self) -> dict | None:
        """The inventory target this invocation acts on (its settings merged over its
        group's and the inventory's vars, templates rendered, plus ``name``), or None
        when the step has no ``target:`` (it acts from the machine running the engine).
        A family reads its own block: ``(ctx.target or {}).get("kubernetes")``."""
        return getattr(self._local, "target", None)

    @property
    def step(self):
        """The step being run in this thread (for actions that talk to the operator)."""
        return getattr(self._local, "step", None)

    @property
    def step_ref(self) -> dict | None:
        return getattr(self._local, "ref", None)

    # --- subprocesses: stopped as a group on timeout or Ctrl-C ---
    def track(self, process) -> None:
        with self._lock:
            self._processes.add(process)

    def untrack(self, process) -> None:
        with self._lock:
            self._processes.discard(process)

    def kill_processes(self) -> None:
        """Kill the process group of every running subprocess (Ctrl-C, abort)."""
        from engine.connections.local import kill_tree

        with self._lock:
            running = list(self._processes)
        for process in running:
            kill_tree(process)

    # --- connection cache: one client per target per run ---
    def connection(self, key: Any, factory: Callable[[], Any]) -> Any:
        """Return the cached client for ``key``, creating it with ``factory`` once."""
        with self._lock:
            if key not in self._connections:
                self._connections[key] = factory()
            return self._connections[key]

    def cached(self, kind: str) -> list:
        """The cached clients whose key starts with ``kind`` (``("postgres", dsn)``...)."""
        with self._lock:
            return [client for key, client in self._connections.items()
                    if isinstance(key, tuple) and key and key[0] == kind]

    def close(self) -> None:
        """Close every cached client that has a ``close()`` method."""
        with self._lock:
            for client in self._connections.values():
                close = getattr(client, "close", None)
                if callable(close):
                    try:
                        close()
                    except Exception:  # closing at the end of a run must not fail it
                        pass
            self._connections.clear()


class Action:
    """Base class. Subclasses set ``name``, ``args_schema``, ``mutates`` and
    implement ``run()``; ``plan()`` defaults to a one-line summary of the args.
    """

    name: ClassVar[str] = ""
    args_schema: ClassVar[dict] = {"type": "object"}
    mutates: ClassVar[bool] = True
    #: the step's ``no_log``/secret-bearing arguments are masked by the executor;
    #: an action may list extra argument names it considers sensitive.
    sensitive_args: ClassVar[tuple[str, ...]] = ()
    #: argument keys that are bare expressions, left unrendered for the action
    raw_args: ClassVar[tuple[str, ...]] = ()
    #: the result's ``data`` become variables (set_fact)
    sets_facts: ClassVar[bool] = False
    #: running it twice is harmless (e.g. PagerDuty events carry a dedup key): a step of
    #: this action that is in doubt on resume is re-run without asking, like a read-only one
    idempotent: ClassVar[bool] = False

    def plan(self, args: dict, ctx: Context) -> str:
        """One line: what ``run()`` would change. May use read-only look-ups. A line
        starting ``no change`` says it would change nothing (then a rehearsal lets later
        read-only steps on the same things run); an ActionError says the service
        refused (a finding of the rehearsal)."""
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        return f"{self.name} {shown}".strip()

    def touches(self, args: Any, ctx: Context) -> set[str]:
        """What this invocation reads or changes, as resource keys (``target:NAME``,
        ``postgres:HOST:PORT/DB``, ``file:/abs/path``, ``http:SCHEME://HOST``, ...).

        A rehearsal uses them to tell a pre-flight probe (it runs) from a check of
        something a planned step would change (it is planned: it would only see the old
        state). The default reads the step's target and the usual argument names
        (``dsn``, ``path``/``dest``/``src``, ``url``); a family overrides it to name
        its own objects (a Kubernetes object, a Route 53 record, ...)."""
        from engine.actions.resources import default_resources

        return default_resources(args, ctx.target)

    def run(self, args: dict, ctx: Context) -> Result:  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def mutates_for(cls, args: Any) -> bool:
        """Whether this invocation changes something: ``mutates`` unless the action's
        effect depends on its arguments (``aws.call`` of a ``Describe*`` operation is a
        read-only probe). ``args`` are rendered, or the step's raw arguments on resume
        (templates unrendered: answer conservatively). The step's ``mutates:`` wins."""
        return cls.mutates

    @classmethod
    def literal_arg_errors(cls, args: Any) -> Iterable[tuple[tuple, str]]:
        """Problems in a step's arguments that JSON Schema cannot express, found by
        ``runbook validate`` (called only when the arguments passed ``args_schema``).
        Yields ``(path inside args, message)``; values that still hold templates are
        known only at run time and must be skipped."""
        return ()

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring, for ``runbook actions``."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""
