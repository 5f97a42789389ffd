"""What the parts of the interpreter share for one run, built once before it starts."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from engine.actions.base import Context
from engine.guide.operator import Guide
from engine.journal import events as ev
from engine.journal.file import Journal
from engine.journal.replay import ReplayState
from engine.run.options import RunOptions
from engine.run.rehearsal import LiveRun
from engine.run.rollback import UndoLog
from engine.source.model import Runbook
from engine.templating import Templar


class Emitter:
    """Appends events to the run's journal with every secret masked before it is durable."""

    def __init__(self, journal: Journal, redactor) -> None:
        self.journal = journal
        self.redactor = redactor

    def __call__(self, kind: str, step: dict | None, data: dict | None = None) -> ev.Event:
        return self.journal.append(kind, step, self.redactor.mask(data or {}))


@dataclass
class Runtime:
    """The run's collaborators: the walker, the invocations and the executor share these."""

    runbook: Runbook
    emit: Emitter
    ctx: Context
    scope: dict  # the run's top-level variables (inventory, inputs, vars, -e)
    extra_vars: dict  # -e values: they win over everything, even set_fact
    options: RunOptions
    policy: LiveRun
    replay: ReplayState
    guide: Guide
    #: holds Ctrl-C/SIGTERM/SIGHUP outside actions, waits and prompts (None in tests)
    guard: object | None = None
    templar: Templar = field(default_factory=Templar)
    undo_log: UndoLog = field(init=False)

    def __post_init__(self) -> None:
        self.undo_log = UndoLog(self.runbook, self.replay)

    @property
    def redactor(self):
        return self.emit.redactor

    @property
    def run_id(self) -> str:
        return self.emit.journal.run_id

    @contextmanager
    def interruptible(self):
        """Let a held signal in while an action, a wait or a prompt runs (main thread only)."""
        if self.guard is None or threading.current_thread() is not threading.main_thread():
            yield
            return
        self.guard.release()  # a signal that waited is raised here, before anything starts
        try:
            yield
        finally:
            self.guard.hold()

    def checkpoint(self) -> None:
        """Deliver a signal that arrived between steps, before the next step starts."""
        with self.interruptible():
            pass

    def target_settings(self, ref: dict) -> dict | None:
        """The inventory target an invocation acts on (its journal reference names it)."""
        name = ref.get("target")
        return self.scope["targets"].get(name) if name else None
