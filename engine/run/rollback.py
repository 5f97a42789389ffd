"""Rollback bookkeeping: what to undo, rendered when each step succeeded.

A step's ``rollback:`` steps are rendered with the values in force at the
moment the step succeeded and recorded in its ``step.succeeded`` event, so a
rollback — in this process or after a resume — undoes exactly what was done.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from engine.source.model import Runbook, Step
from engine.journal.replay import ReplayState
from engine.templating import Templar, TemplateFailure, UnknownValue


@dataclass
class UndoEntry:
    step: Step
    records: list[dict]
    #: the journal reference of the invocation that is undone (its loop item and target)
    origin: dict | None = None

    def ref(self, undo: Step) -> dict:
        """Journal reference of one rollback step (per loop item and target, so each is
        resumable, and runs against the target the step acted on)."""
        ref = {"id": undo.id, "path": undo.path, "name": undo.label}
        for key in ("target", "item"):
            if self.origin and key in self.origin:
                ref[key] = self.origin[key]
        return ref


class UndoLog:
    """Completed steps that have rollback steps, in completion order."""

    def __init__(self, runbook: Runbook, replay: ReplayState) -> None:
        steps = {s.id: s for s in runbook.walk()}
        self._entries = [UndoEntry(steps[origin["id"]], records, origin)
                         for origin, records in replay.undo if origin["id"] in steps]
        self._lock = threading.Lock()

    def record(self, step: Step, scope: dict, templar: Templar,
               origin: dict | None = None) -> list[dict]:
        """Render ``step.rollback`` now and remember it; returns the records for the journal."""
        records = []
        for undo in step.rollback:
            try:
                args = templar.render(undo.args, scope)
                problem = None
            except (TemplateFailure, UnknownValue) as exc:
                args, problem = undo.args, str(exc)
            records.append({"id": undo.id, "action": undo.action, "args": args,
                            **({"render_error": problem} if problem else {})})
        with self._lock:
            self._entries.append(UndoEntry(step, records, origin))
        return records

    def pending(self) -> list[UndoEntry]:
        """What a rollback runs: newest completed step first."""
        with self._lock:
            return list(reversed(self._entries))
