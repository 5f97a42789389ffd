"""The interpreter's entry point: runs a compiled runbook to its end, a pause, an abort or an
interrupt, rolls back when asked, and journals how the run ended.

The parts: ``walker`` (the step tree), ``invocation`` (one action invocation) and
``rehearsal`` (the dry-run policy). The executor never prints: everything it has to say
is an event appended to the journal, which reporters observe.
"""
from __future__ import annotations

import time
from dataclasses import replace

from engine.control import RollbackRequested, RunAborted, RunPaused
from engine.journal import events as ev
from engine.journal.replay import step_key
from engine.run.invocation import StepFailed
from engine.run.outcome import RunOutcome, RunStatus
from engine.run.runtime import Runtime
from engine.run.walker import Walker
from engine.timestamps import epoch


class Executor:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.walker = Walker(runtime)

    def run(self) -> RunOutcome:
        """Run to the end, a pause, an abort or an interrupt.

        The runtime's guard (engine.run.signals.InterruptGuard) holds Ctrl-C/SIGTERM/SIGHUP
        except while an action, a wait or an operator prompt is under way, so an interrupt
        never falls between a step's events; once the run's end is journaled, later
        signals are ignored.
        """
        start = time.monotonic()
        try:
            outcome = self._run_or_roll_back()
        except RunPaused as pause:
            outcome = self._outcome(RunStatus.PAUSED, message=_paused_message(pause))
        except RunAborted as abort:
            outcome = self._outcome(RunStatus.ABORTED, message=abort.reason + ": resume with "
                                    f"'runbook resume {self.rt.run_id}'")
        except KeyboardInterrupt:
            self.rt.ctx.cancelled.set()
            self.rt.ctx.kill_processes()
            outcome = self._outcome(RunStatus.INTERRUPTED, message="interrupted: resume with "
                                    f"'runbook resume {self.rt.run_id}'")
        finally:
            self.rt.ctx.close()
        try:
            self._finish(outcome, time.monotonic() - start)
        except KeyboardInterrupt:
            pass  # arrived while the end was being journaled: the run is over, and says so
        if self.rt.guard is not None:
            self.rt.guard.finished = True
        return outcome

    def _outcome(self, status: RunStatus, failed_step: str | None = None,
                 message: str = "") -> RunOutcome:
        policy = self.rt.policy
        return RunOutcome(status, list(policy.findings), failed_step, message, policy.strict)

    def _run_or_roll_back(self) -> RunOutcome:
        runbook = self.rt.runbook
        if self.rt.replay.rollback_started is not None:  # resumed in the middle of a rollback
            started = self.rt.replay.rollback_started.data
            return self._roll_back(started.get("reason", "resumed"),
                                   completed=bool(started.get("completed_run")))
        try:
            self.walker.steps(runbook.steps, self.rt.scope, frozenset())
        except StepFailed as failure:
            if self._on_failure() == "rollback":
                return self._roll_back(failure.message, failure.step.id)
            return self._outcome(RunStatus.FAILED, failure.step.id, failure.message)
        except RollbackRequested as request:
            if runbook.rollback_strategy == "never":
                return self._outcome(RunStatus.FAILED, message=request.reason + " — not rolled "
                                     "back: the runbook says rollback_strategy: never")
            return self._roll_back(request.reason)
        if runbook.rollback_strategy == "always" and self.rt.policy.rolls_back():
            return self._roll_back("rollback_strategy: always", completed=True)
        return self._outcome(RunStatus.COMPLETED)

    def _on_failure(self) -> str:
        strategy = self.rt.runbook.rollback_strategy
        if not self.rt.policy.rolls_back() or strategy == "never":
            return "stop"
        if strategy == "always":
            return "rollback"
        return self.rt.options.on_failure or self.rt.runbook.on_failure

    def _roll_back(self, reason: str, failed_step: str | None = None,
                   completed: bool = False) -> RunOutcome:
        """Run the recorded rollbacks of completed steps, newest first.

        The run ends failed, or ``completed`` when it succeeded and is rolled back
        by ``rollback_strategy: always``."""
        entries = self.rt.undo_log.pending()
        summary = {"reason": reason, "completed_run": completed,
                   "steps": [e.step.id for e in entries]}
        if self.rt.replay.rollback_started is None:
            self.rt.emit(ev.ROLLBACK_STARTED, None, summary)
        for entry in entries:
            for rb_step, record in zip(entry.step.rollback, entry.records):
                ref = entry.ref(rb_step)
                if self.rt.replay.completed.get(step_key(ref)) is not None:
                    continue
                recorded = replace(rb_step, args=record.get("args"), rollback=())
                try:
                    self.walker.invocation.execute(recorded, self.rt.scope, ref)
                except StepFailed as failure:
                    return self._outcome(RunStatus.FAILED, failure.step.id,
                                         f"rollback failed: {failure.message}")
        self.rt.emit(ev.ROLLBACK_COMPLETED, None, summary)
        return self._outcome(RunStatus.COMPLETED if completed else RunStatus.FAILED, failed_step,
                             f"{reason} — rolled back {len(entries)} step(s)")

    def _finish(self, outcome: RunOutcome, active: float) -> None:
        """Journal the end: the run's wall time since it first started (across resumes),
        this process's share of it, and by how much a real run missed its RTO."""
        events = self.rt.emit.journal.events
        elapsed = time.time() - epoch(events[0].ts) if events else active
        rto = self.rt.runbook.rto
        missed = (round(elapsed - rto, 3) if rto and elapsed > rto and not self.rt.policy.dry_run
                  and outcome.status in (RunStatus.COMPLETED, RunStatus.FAILED) else None)
        self.rt.emit(outcome.status.event, None, {
            "status": outcome.status.value, "elapsed": round(elapsed, 3),
            "active": round(active, 3), "rto": rto, "rto_missed_by": missed,
            **self.rt.policy.end_data(), "findings": outcome.findings,
            "failed_step": outcome.failed_step, "message": outcome.message})


def _paused_message(pause: RunPaused) -> str:
    return pause.reason + (f"\n  {pause.hint}" if pause.hint else "")
