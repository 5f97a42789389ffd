"""The interpreter: walks a compiled runbook and runs (or plans) each step.

It owns control flow (when, loop, retries/until, verify, block/rescue/always,
parallel, tags, --start-at, resume) and the dry-run contract. It never prints:
everything it has to say is an event appended to the journal, which reporters
observe.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from engine import actions
from engine.journal import events as ev
from engine.actions.base import ActionError, Context, Result
from engine.source.compiler import check_rendered_args
from engine.control import RollbackRequested, RunAborted, RunPaused
from engine.guide.operator import Guide, StepPreview
from engine.journal.file import Journal
from engine.source.model import Runbook, Step, StepKind, Verify
from engine.journal.replay import ReplayState, step_key
from engine.run.rollback import UndoLog
from engine.run.values import (STANDARD_KEYS, failed_value, loop_value, restored_value,
                           result_value, skipped_value)
from engine.templating import (Redactor, Templar, TemplateFailure, Unknown, UnknownValue,
                               contains_unknown)

HIDDEN = "<hidden: no_log>"
_PLACEHOLDER = "unknown until run>"


@dataclass(frozen=True)
class RunOptions:
    dry_run: bool = False
    strict: bool = False
    tags: frozenset[str] = frozenset()
    skip_tags: frozenset[str] = frozenset()
    start_at: str | None = None
    step_mode: bool = False
    on_failure: str | None = None  # stop | rollback; None: the runbook's own setting
    limit: str | None = None  # --limit: fnmatch patterns (comma-separated) over target names

    def selects_target(self, name: str) -> bool:
        """Whether ``--limit`` keeps this target (Ansible's habit: ``db*,!db3``)."""
        if not self.limit:
            return True
        from fnmatch import fnmatchcase

        patterns = [p.strip() for p in self.limit.split(",") if p.strip()]
        keep = [p for p in patterns if not p.startswith("!")]
        drop = [p[1:] for p in patterns if p.startswith("!")]
        return ((not keep or any(fnmatchcase(name, p) for p in keep))
                and not any(fnmatchcase(name, p) for p in drop))


class StepFailed(Exception):
    """A step failed and nothing ignored or rescued it."""

    def __init__(self, step: Step, message: str, ref: dict | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.message = message
        self.ref = ref or _ref(step)


@dataclass
class RunOutcome:
    status: str  # completed | failed | interrupted | paused | aborted
    findings: list[dict] = field(default_factory=list)
    failed_step: str | None = None
    message: str = ""


class Executor:
    def __init__(self, runbook: Runbook, journal: Journal, ctx: Context, scope: dict,
                 extra_vars: dict, options: RunOptions, redactor: Redactor,
                 replay: ReplayState | None = None, guide: Guide | None = None) -> None:
        self.runbook = runbook
        self.journal = journal
        self.ctx = ctx
        self.scope = scope
        self.extra_vars = extra_vars
        self.options = options
        self.redactor = redactor
        self.replay = replay or ReplayState()
        self.templar = Templar()
        self.findings: list[dict] = []
        self._findings_lock = threading.Lock()
        self._started = options.start_at is None
        self._estimate = 0.0
        self.guide = guide or Guide(journal.events)
        self.guide.emit = self.emit  # operator events are redacted like every other
        ctx.guide = self.guide
        self.undo_log = UndoLog(runbook, self.replay)
        self._forward = _forward_steps(runbook)  # action steps in order, for step mode
        self._ordinals = {s.id: n for n, s in enumerate(self._forward, 1)}
        self.guard = None  # set by run()

    # --- the run ---
    def run(self, guard=None) -> RunOutcome:
        """Run to the end, a pause, an abort or an interrupt.

        ``guard`` (engine.run.signals.InterruptGuard) holds Ctrl-C/SIGTERM/SIGHUP
        except while an action, a wait or an operator prompt is under way (see
        ``_interruptible``), so an interrupt never falls between a step's events;
        once the run's end is journaled, later signals are ignored.
        """
        start = time.monotonic()
        self.guard = guard
        try:
            outcome = self._run_or_roll_back()
        except RunPaused as pause:
            outcome = RunOutcome("paused", self.findings, message=_paused_message(pause))
        except RunAborted as abort:
            outcome = RunOutcome("aborted", self.findings, message=abort.reason + ": resume with "
                                 f"'runbook resume {self.journal.run_id}'")
        except KeyboardInterrupt:
            self.ctx.cancelled.set()
            self.ctx.kill_processes()
            outcome = RunOutcome("interrupted", self.findings,
                                 message="interrupted: resume with 'runbook resume "
                                         f"{self.journal.run_id}'")
        finally:
            self.ctx.close()
        try:
            self._finish(outcome, time.monotonic() - start)
        except KeyboardInterrupt:
            pass  # arrived while the end was being journaled: the run is over, and says so
        if guard is not None:
            guard.finished = True
        return outcome

    def _run_or_roll_back(self) -> RunOutcome:
        if self.replay.rollback_started is not None:  # resumed in the middle of a rollback
            started = self.replay.rollback_started.data
            return self._roll_back(started.get("reason", "resumed"),
                                   completed=bool(started.get("completed_run")))
        try:
            self._steps(self.runbook.steps, self.scope, frozenset())
        except StepFailed as failure:
            if self._on_failure() == "rollback":
                return self._roll_back(failure.message, failure.step.id)
            return RunOutcome("failed", self.findings, failure.step.id, failure.message)
        except RollbackRequested as request:
            if self.runbook.rollback_strategy == "never":
                return RunOutcome("failed", self.findings, message=request.reason +
                                  " — not rolled back: the runbook says rollback_strategy: never")
            return self._roll_back(request.reason)
        if self.runbook.rollback_strategy == "always" and not self.options.dry_run:
            return self._roll_back("rollback_strategy: always", completed=True)
        return RunOutcome("completed", self.findings)

    def _on_failure(self) -> str:
        if self.options.dry_run or self.runbook.rollback_strategy == "never":
            return "stop"
        if self.runbook.rollback_strategy == "always":
            return "rollback"
        return self.options.on_failure or self.runbook.on_failure

    def _roll_back(self, reason: str, failed_step: str | None = None,
                   completed: bool = False) -> RunOutcome:
        """Run the recorded rollbacks of completed steps, newest first.

        The run ends failed, or ``completed`` when it succeeded and is rolled back
        by ``rollback_strategy: always``."""
        entries = self.undo_log.pending()
        if self.replay.rollback_started is None:
            self.emit(ev.ROLLBACK_STARTED, None, {"reason": reason, "completed_run": completed,
                                                   "steps": [e.step.id for e in entries]})
        for entry in entries:
            for rb_step, record in zip(entry.step.rollback, entry.records):
                ref = entry.ref(rb_step)
                if self.replay.completed.get(step_key(ref)) is not None:
                    continue
                recorded = replace(rb_step, args=record.get("args"), rollback=())
                try:
                    self._execute(recorded, self.scope, ref)
                except StepFailed as failure:
                    return RunOutcome("failed", self.findings, failure.step.id,
                                      f"rollback failed: {failure.message}")
        self.emit(ev.ROLLBACK_COMPLETED, None, {"reason": reason, "completed_run": completed,
                                                 "steps": [e.step.id for e in entries]})
        return RunOutcome("completed" if completed else "failed", self.findings, failed_step,
                          f"{reason} — rolled back {len(entries)} step(s)")

    def _finish(self, outcome: RunOutcome, elapsed: float) -> None:
        kind = {"completed": ev.RUN_COMPLETED, "failed": ev.RUN_FAILED,
                "interrupted": ev.RUN_INTERRUPTED, "paused": ev.RUN_PAUSED,
                "aborted": ev.RUN_ABORTED}[outcome.status]
        self.emit(kind, None, {
            "status": outcome.status, "elapsed": round(elapsed, 3), "rto": self.runbook.rto,
            "dry_run": self.options.dry_run, "findings": outcome.findings,
            "estimate": round(self._estimate, 3) if self.options.dry_run else None,
            "failed_step": outcome.failed_step, "message": outcome.message})

    def emit(self, kind: str, step: dict | None, data: dict | None = None) -> ev.Event:
        return self.journal.append(kind, step, self.redactor.mask(data or {}))

    # --- walking ---
    def _steps(self, steps, scope: dict, tags: frozenset) -> None:
        for step in steps:
            self._step(step, scope, tags | step.tags)

    def _step(self, step: Step, scope: dict, tags: frozenset) -> None:
        if step.kind is StepKind.BLOCK:
            self._block(step, scope, tags)
        elif step.kind is StepKind.PARALLEL:
            self._parallel(step, scope, tags)
        else:
            self._action_step(step, scope, tags)

    def _group_allowed(self, step: Step, scope: dict) -> bool:
        """Evaluate a group's ``when`` (it applies to every step inside)."""
        if step.when is None or not self._started:
            return True
        ref = _ref(step)
        try:
            if self.templar.truth(step.when, self._local_scope(step, scope)):
                return True
        except UnknownValue as unknown:
            self.emit(ev.STEP_PLANNED, ref, {"conditional": _when_text(step.when),
                                             "plan": f"would run if {_when_text(step.when)}",
                                             "unknown": unknown.unknown.origin})
            return False
        except TemplateFailure as exc:
            self._fail(step, ref, f"{step.pos}: when: {exc}")
            return False
        self.emit(ev.STEP_SKIPPED, ref, {"reason": f"condition false: {_when_text(step.when)}"})
        return False

    def _block(self, step: Step, scope: dict, tags: frozenset) -> None:
        if not self._group_allowed(step, scope):
            return
        try:
            local = self._local_scope(step, scope)
        except TemplateFailure as exc:
            self._fail(step, _ref(step), f"{step.pos}: {exc}")
            return
        try:
            rescued = self.replay.rescued.get(step.id)
            if rescued is None:
                self._steps(step.block, local, tags)
            else:  # resumed after the block failed and its rescue began
                self._rescue(step, local, tags, rescued)
        except StepFailed as failure:
            if not step.rescue:
                self._steps(step.always, local, tags)
                raise
            failed = {"step": failure.step.id, "message": failure.message,
                      "key": step_key(failure.ref)}
            self.emit(ev.STEP_RESCUED, _ref(step), failed)
            self._rescue(step, local, tags, failed)
        self._steps(step.always, local, tags)
        self._merge_back(scope, local)

    def _rescue(self, step: Step, local: dict, tags: frozenset, failed: dict) -> None:
        local["failure"] = {"step": failed["step"], "message": failed["message"]}
        try:
            self._steps(step.rescue, local, tags)
        except StepFailed:
            self._steps(step.always, local, tags)
            raise

    def _parallel(self, step: Step, scope: dict, tags: frozenset) -> None:
        if not self._group_allowed(step, scope):
            return
        branches = [dict(scope) for _ in step.children]

        def run_branch(index: int) -> None:
            child = step.children[index]
            self._step(child, branches[index], tags | child.tags)

        errors = self._run_concurrently(run_branch, len(step.children), len(step.children))
        for branch in branches:
            self._merge_back(scope, branch)
        if errors:
            raise errors[0]

    @contextmanager
    def _interruptible(self):
        """Let a held signal in while an action, a wait or a prompt runs (main thread only)."""
        if self.guard is None or threading.current_thread() is not threading.main_thread():
            yield
            return
        self.guard.release()  # a signal that waited is raised here, before anything starts
        try:
            yield
        finally:
            self.guard.hold()

    def _checkpoint(self) -> None:
        """Deliver a signal that arrived between steps, before the next step starts."""
        with self._interruptible():
            pass

    def _run_concurrently(self, fn, count: int, workers: int) -> list[StepFailed]:
        """Run ``fn(i)`` for i in range(count) on ``workers`` threads; collect step failures."""
        failures: list[StepFailed] = []
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(fn, i) for i in range(count)]
            try:
                for future in futures:
                    try:
                        with self._interruptible():
                            future.result()
                    except StepFailed as failure:
                        failures.append(failure)
            except KeyboardInterrupt:
                self.ctx.cancelled.set()
                self.ctx.kill_processes()
                for future in futures:
                    future.cancel()
                raise
        return failures

    def _merge_back(self, scope: dict, local: dict) -> None:
        """Copy what a block or branch registered back into the enclosing scope."""
        for key, value in local.items():
            if key == "failure":
                continue
            if scope.get(key, _MISSING) is not value:
                scope[key] = value

    # --- one action step ---
    def _action_step(self, step: Step, scope: dict, tags: frozenset) -> None:
        ref = _ref(step)
        if not self._started:
            if step.id != self.options.start_at:
                return
            self._started = True
        done = self.replay.completed.get(step.id)
        if done is not None:
            self._restore(step, scope, done)
            return
        if not self._selected(tags):
            self.emit(ev.STEP_SKIPPED, ref, {"reason": "excluded by --tags/--skip-tags"})
            return
        try:
            local = self._local_scope(step, scope)
            if step.when is not None and not self.templar.truth(step.when, local):
                self.emit(ev.STEP_SKIPPED, ref, {"reason": f"condition false: {_when_text(step.when)}",
                                                 "value": skipped_value()})
                self._register(step, scope, skipped_value())
                return
        except UnknownValue as unknown:
            self._plan_conditional(step, scope, ref, unknown)
            return
        except TemplateFailure as exc:
            self._fail(step, ref, f"{step.pos}: {exc}")
            self._register(step, scope, failed_value(str(exc)))
            return
        if self.guide.step_mode and not self.options.dry_run:
            with self._interruptible():
                decision = self.guide.before_step(step, ref, self._preview(step, local, ref))
            if decision == "skip":
                self.emit(ev.STEP_SKIPPED, ref, {"reason": "skipped by the operator",
                                                 "value": skipped_value()})
                self._register(step, scope, skipped_value())
                return
        if step.loop is not None or step.target is not None:
            self._iterations(step, scope, local, ref)
        else:
            value = self._execute(step, local, ref)
            self._register(step, scope, value)

    def _preview(self, step: Step, scope: dict, ref: dict) -> StepPreview:
        """What step mode shows before a step: rendered arguments, plan, RTO budget."""
        cls = actions.get_action(step.action)
        once = step.loop is None and step.target is None
        try:
            args = self._render_args(step, cls, scope) if once else step.args
            if once:
                self._bind(step, ref, scope, deadline=None)
            plan = self._plan_line(cls(), args, step) if once else (
                f"{step.action} for each {'item of the loop' if step.loop is not None else 'target'}")
        except (TemplateFailure, UnknownValue) as exc:
            args, plan = step.args, f"(cannot render the arguments yet: {exc})"
        shown = HIDDEN if step.no_log else self.redactor.mask(args)
        plan = f"{step.action} {HIDDEN}" if step.no_log else self.redactor.mask(plan)
        remaining = sum(s.expected_duration or 0 for s in self._forward
                        if self._ordinals.get(s.id, 0) >= self._ordinals.get(step.id, 0)
                        and s.id not in self.replay.completed)
        return StepPreview(self._ordinals.get(step.id, 0), len(self._ordinals), step.action,
                           shown, plan, step.expected_duration, remaining)

    def _selected(self, tags: frozenset) -> bool:
        if self.options.tags and not (tags & self.options.tags or "always" in tags):
            return False
        return not (self.options.skip_tags and tags & self.options.skip_tags)

    def _local_scope(self, step: Step, scope: dict) -> dict:
        if not step.vars:
            return scope
        local = dict(scope)
        for name, value in step.vars.items():
            try:
                local[name] = self.templar.render(value, local)
            except UnknownValue as unknown:  # dry-run: the step's arguments become unknown
                local[name] = unknown.unknown
            except TemplateFailure as exc:
                raise TemplateFailure(f"vars.{name}: {exc}") from None
        return local

    def _plan_conditional(self, step: Step, scope: dict, ref: dict, unknown: UnknownValue) -> None:
        condition = _when_text(step.when)
        self.emit(ev.STEP_PLANNED, ref, {"plan": f"would run if {condition}",
                                         "conditional": condition,
                                         "unknown": unknown.unknown.origin,
                                         "expected_duration": step.expected_duration})
        self._estimate += step.expected_duration or 0
        self._register(step, scope, Unknown(step.register or step.id))

    def _iterations(self, step: Step, scope: dict, local: dict, ref: dict) -> None:
        """Run a step once per target and loop item, each journaled (and resumed) on its own."""
        try:
            targets = self._targets(step, local, ref)
            items = self._loop_items(step, local) if step.loop is not None else [_NO_ITEM]
        except UnknownValue as unknown:
            self._plan_conditional(step, scope, ref, unknown)
            return
        except TemplateFailure as exc:
            what = "loop" if step.target is None or "target" not in str(exc) else "target"
            self._fail(step, ref, f"{step.pos}: {what}: {exc}")
            self._register(step, scope, failed_value(str(exc)))
            return
        runs = [(name, index, item) for name in targets for index, item in enumerate(items)]
        results: list[Any] = [None] * len(runs)

        def run_one(position: int) -> None:
            name, index, item = runs[position]
            one_scope, one_ref = dict(local), dict(ref)
            if name is not None:
                one_scope["target"] = self.scope["targets"][name]
                one_ref["target"] = name
            if item is not _NO_ITEM:
                one_scope[step.loop_var] = item
                one_scope["loop_index"] = index
                one_ref["item"] = index
            done = self.replay.completed.get(step_key(one_ref))
            value = restored_value(done) if done is not None else (
                self._execute(step, one_scope, one_ref))
            if name is not None and isinstance(value, dict):
                value = {**value, "target": name}
            results[position] = value

        if step.loop_parallel > 1:
            failures = self._run_concurrently(run_one, len(runs), step.loop_parallel)
            if failures:
                raise failures[0]
        else:
            for position in range(len(runs)):
                run_one(position)
        single = step.loop is None and len(runs) == 1
        self._register(step, scope, results[0] if single else loop_value(results))

    def _targets(self, step: Step, scope: dict, ref: dict) -> list[str | None]:
        """The inventory targets a step runs on (groups expanded, ``--limit`` applied)."""
        if step.target is None:
            return [None]
        wanted = self.templar.render(step.target, scope)
        if isinstance(wanted, Unknown):
            raise UnknownValue(wanted)
        names = resolve_targets(wanted, self.scope.get("targets", {}), self.scope.get("groups", {}))
        kept = [n for n in names if self.options.selects_target(n)]
        for name in names:
            if name not in kept:
                self.emit(ev.STEP_SKIPPED, {**ref, "target": name},
                          {"reason": f"excluded by --limit {self.options.limit}",
                           "value": skipped_value()})
        return kept

    def _loop_items(self, step: Step, scope: dict) -> list:
        items = step.loop
        if isinstance(items, str):
            items = self.templar.render(items, scope)
        else:
            items = [self.templar.render(i, scope) for i in items]
        if isinstance(items, Unknown):
            raise UnknownValue(items)
        if isinstance(items, dict):
            return [{"key": k, "value": v} for k, v in items.items()]
        if not isinstance(items, (list, tuple)):
            raise TemplateFailure(f"loop must be a list, got {type(items).__name__}")
        return list(items)

    def _execute(self, step: Step, scope: dict, ref: dict) -> Any:
        """Run (or plan) one invocation of a step's action; returns the registered value."""
        cls = actions.get_action(step.action)
        try:
            args = self._render_args(step, cls, scope)
        except UnknownValue as unknown:
            return self._planned(step, ref, f"{step.action} (arguments known only at run time)",
                                 unknown.unknown.origin)
        except TemplateFailure as exc:
            self.emit(ev.STEP_STARTED, ref, {"action": step.action})
            return self._fail(step, ref, f"{step.pos}: {exc}")
        shown = HIDDEN if step.no_log else args
        action = cls()
        mutates = cls.mutates_for(args) if step.mutates is None else step.mutates
        if self.options.dry_run and (mutates or _has_unknown(args)):
            self._bind(step, ref, scope, deadline=None)  # a plan reads the step's target too
            plan = f"{step.action} {HIDDEN}" if step.no_log else self._plan_line(action, args, step)
            return self._planned(step, ref, plan, None, shown)
        while True:
            self._checkpoint()
            self.emit(ev.STEP_STARTED, ref, {"action": step.action, "args": shown,
                                              "mutates": mutates})
            try:
                return self._attempts(step, ref, action, args, scope)
            except StepFailed as failure:
                with self._interruptible():
                    decision = self.guide.after_failure(step, ref, failure.message)
                if decision == "retry":
                    continue
                if decision == "skip":
                    self.emit(ev.STEP_SKIPPED, ref, {"reason": "skipped by the operator after "
                                                     "a failure", "value": skipped_value()})
                    return skipped_value()
                raise

    def _render_args(self, step: Step, cls, scope: dict) -> Any:
        if cls.raw_args and isinstance(step.args, dict):
            args = {k: (v if k in cls.raw_args else self.templar.render(v, scope))
                    for k, v in step.args.items()}
        else:
            args = self.templar.render(step.args, scope)
        if args is None:
            args = {}
        unknown = contains_unknown(args)
        if unknown is not None:
            raise UnknownValue(unknown)
        problem = check_rendered_args(cls, args) if not _has_unknown(args) else None
        if problem:
            raise TemplateFailure(f"after rendering: {problem}")
        return args

    def _plan_line(self, action, args, step: Step) -> str:
        try:
            with self._interruptible():  # a plan may do slow read-only look-ups
                return _one_line(action.plan(args, self.ctx))
        except ActionError as exc:
            return f"{step.action}: {exc}"
        except Exception as exc:  # a plan must never end a rehearsal
            return f"{step.action} (plan unavailable: {type(exc).__name__})"

    def _planned(self, step: Step, ref: dict, plan: str, unknown: str | None,
                 args: Any = None) -> Unknown:
        self.emit(ev.STEP_PLANNED, ref, {"action": step.action, "plan": plan, "args": args,
                                         "unknown": unknown,
                                         "expected_duration": step.expected_duration})
        self._estimate += step.expected_duration or 0
        return Unknown(step.register or step.id)

    def _attempts(self, step: Step, ref: dict, action, args, scope: dict) -> Any:
        attempt, start = 0, time.monotonic()
        while True:
            attempt += 1
            value = self._invoke(step, ref, action, args, scope)
            problem = self._attempt_problem(step, value, scope)
            if problem is None or attempt > step.retries:
                break
            self.emit(ev.STEP_RETRY, ref, {"attempt": attempt,
                                           "message": HIDDEN if step.no_log else problem})
            with self._interruptible():
                cancelled = self.ctx.cancelled.wait(step.delay)
            if cancelled:
                raise KeyboardInterrupt
        if problem is None:
            problem = self._verify(step, ref, action, args, scope, value)
        value["attempts"] = attempt
        elapsed = time.monotonic() - start
        self._estimate += max(elapsed, step.expected_duration or 0) if self.options.dry_run else 0
        if problem is not None:
            value.update(ok=False, failed=True, message=problem)
            return self._fail(step, ref, problem, value)
        data = self._end_data(step, value)
        if step.rollback:
            data["rollback"] = self.undo_log.record(step, self._result_scope(step, scope, value),
                                                    self.templar, ref)
        self.emit(ev.STEP_SUCCEEDED, ref, data)
        return value

    def _invoke(self, step: Step, ref: dict, action, args, scope: dict) -> dict:
        self._bind(step, ref, scope, time.monotonic() + step.timeout if step.timeout else None)
        start = time.monotonic()
        try:
            with self._interruptible():
                result = action.run(args, self.ctx)
        except ActionError as exc:
            result = Result(ok=False, message=str(exc))
        except TemplateFailure as exc:
            result = Result(ok=False, message=str(exc))
        except RunPaused as pause:
            self.emit(ev.STEP_PAUSED, self.ctx.step_ref, {"reason": pause.reason, "hint": pause.hint})
            raise
        except (KeyboardInterrupt, SystemExit, RunAborted, RollbackRequested):
            raise
        except Exception as exc:  # an action bug must fail the step, not the engine
            result = Result(ok=False, message=f"action {step.action} crashed: "
                                              f"{type(exc).__name__}: {exc}")
        elapsed = time.monotonic() - start
        if step.timeout and elapsed > step.timeout and result.ok:
            result = Result(ok=False, data=result.data,
                            message=f"timed out after {step.timeout:g}s")
        if action.sets_facts and result.ok:
            scope.update(result.data)
        if step.mutates is False and result.changed:
            result = replace(result, changed=False)  # the author declared it a read-only probe
        return result_value(result, elapsed)

    def _bind(self, step: Step, ref: dict, scope: dict, deadline: float | None) -> None:
        """Tell the context which step, scope and inventory target the action acts on."""
        target = ref.get("target")
        self.ctx.bind_step(deadline, lambda expr: self.templar.truth(expr, scope), step, ref,
                           self.scope["targets"].get(target) if target else None)

    def _attempt_problem(self, step: Step, value: dict, scope: dict) -> str | None:
        if step.until is None:
            return None if value["ok"] else value["message"] or "failed"
        until_scope = self._result_scope(step, scope, value)
        try:
            return None if self.templar.truth(step.until, until_scope) else (
                f"until not met: {step.until}")
        except (TemplateFailure, UnknownValue) as exc:
            return f"until: {exc}"

    def _result_scope(self, step: Step, scope: dict, value: dict) -> dict:
        local = dict(scope)
        local["result"] = value
        if step.register:
            local[step.register] = value
        return local

    def _verify(self, step: Step, ref: dict, action, args, scope: dict, value: dict) -> str | None:
        for check in step.verify:
            problem = self._verify_one(step, ref, check, action, args, scope, value)
            if problem is not None:
                return problem
        return None

    def _verify_one(self, step, ref, check: Verify, action, args, scope, value) -> str | None:
        tries = 0
        while True:
            failed = self._failed_expression(check, self._result_scope(step, scope, value))
            if failed is None:
                self.emit(ev.VERIFY_PASSED, ref, {"that": list(check.that)})
                return None
            if tries >= check.retries or (action.mutates_for(args) and step.mutates is not False):
                break
            tries += 1
            with self._interruptible():
                cancelled = self.ctx.cancelled.wait(check.delay)
            if cancelled:
                raise KeyboardInterrupt
            value.update(self._invoke(step, ref, action, args, scope))  # re-probe read-only state
        message = self._verify_message(check, failed, self._result_scope(step, scope, value))
        self.emit(ev.VERIFY_FAILED, ref, {"that": list(check.that), "message": message})
        return message

    def _verify_message(self, check: Verify, failed: str, scope: dict) -> str:
        if not check.message:
            return f"verification failed: {failed}"
        try:
            return str(self.templar.render(check.message, scope))
        except (TemplateFailure, UnknownValue):
            return check.message

    def _failed_expression(self, check: Verify, scope: dict) -> str | None:
        for expression in check.that:
            try:
                if not self.templar.truth(expression, scope):
                    return expression
            except (TemplateFailure, UnknownValue) as exc:
                return f"{expression} ({exc})"
        return None

    def _end_data(self, step: Step, value: dict) -> dict:
        data = {"changed": value["changed"], "elapsed": value["elapsed"],
                "message": HIDDEN if step.no_log else value["message"],
                "attempts": value.get("attempts", 1), "expected_duration": step.expected_duration}
        # The standard keys are already above: keep only the action's own data,
        # which ``restored_value`` puts back together on resume.
        data["value"] = HIDDEN if step.no_log else {
            k: v for k, v in value.items() if k not in STANDARD_KEYS or k == "ok"}
        return data

    def _fail(self, step: Step, ref: dict, message: str, value: dict | None = None) -> dict:
        value = value or failed_value(message)
        if step.no_log:  # a failure message may quote the hidden output (stderr's last line)
            message = f"failed, details {HIDDEN}"
        data = self._end_data(step, value)
        data["message"] = message
        if self.options.dry_run:
            data["finding"] = True
            with self._findings_lock:
                self.findings.append({"step": step.id, "name": step.label, "message": message,
                                      "at": str(step.pos)})
        if step.ignore_errors:
            data["ignored"] = True
        self.emit(ev.STEP_FAILED, ref, data)
        if not (self.options.dry_run or step.ignore_errors):
            raise StepFailed(step, f"{step.label}: {message}", ref)
        if self.options.dry_run:
            # A finding may only mean an earlier change was not made: what this
            # step would return is unknown, not "failed", so later steps plan.
            return Unknown(step.register or step.id)
        return value

    def _register(self, step: Step, scope: dict, value: Any) -> None:
        if step.register:
            scope[step.register] = value
        for name, extra in self.extra_vars.items():
            scope[name] = extra  # -e always wins, even over set_fact

    def _restore(self, step: Step, scope: dict, done: dict) -> None:
        value = restored_value(done)
        if step.action and actions.get_action(step.action).sets_facts and isinstance(value, dict):
            facts = {k: v for k, v in value.items() if k not in STANDARD_KEYS}
            scope.update(facts)
        self._register(step, scope, value)


_MISSING = object()
_NO_ITEM = object()  # a step without a loop runs once per target


def resolve_targets(wanted: Any, targets: dict, groups: dict) -> list[str]:
    """Target names from a ``target:`` value: a name, a group, or a list of either."""
    names: list[str] = []
    for entry in wanted if isinstance(wanted, (list, tuple)) else [wanted]:
        entry = str(entry)
        if entry in groups:
            found = list(groups[entry])
        elif entry in targets:
            found = [entry]
        else:
            from engine.source.schema import did_you_mean

            raise TemplateFailure(f"target '{entry}' is not an inventory target or group"
                                  f"{did_you_mean(entry, [*targets, *groups])}")
        names += [n for n in found if n not in names]
    return names
def _forward_steps(runbook: Runbook) -> list[Step]:
    """Action steps of the runbook in order, without rollback steps."""
    out = []

    def walk(steps):
        for step in steps:
            if step.action:
                out.append(step)
            for group in (step.block, step.rescue, step.always, step.children):
                walk(group)

    walk(runbook.steps)
    return out


def _paused_message(pause: RunPaused) -> str:
    return pause.reason + (f"\n  {pause.hint}" if pause.hint else "")


def _ref(step: Step) -> dict:
    return {"id": step.id, "path": step.path, "name": step.label}


def _when_text(when: Any) -> str:
    if isinstance(when, list):
        return " and ".join(f"({w})" for w in when)
    return str(when)


def _one_line(text: str) -> str:
    """Plans are one line: multi-line scripts are joined with a visible marker."""
    return " ⏎ ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())


def _has_unknown(value: Any) -> bool:
    if isinstance(value, str):
        return _PLACEHOLDER in value
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return isinstance(value, Unknown)
