"""The rehearsal policy: the only code that knows a dry-run exists.

A run is either *live* (every step runs; a failure stops the run unless it is
ignored or rescued) or a *rehearsal* (``--dry-run``: read-only probes run,
mutating steps and steps whose arguments are unknown are only planned, a failed
probe is a *finding* and the rehearsal goes on, nothing is rolled back, and the
time to recovery is estimated). The walker and the invocation ask the policy;
they never test a dry-run flag themselves.
"""
from __future__ import annotations

import threading
from typing import Any

from engine.templating import Unknown

#: what ``str(Unknown)`` renders to inside a larger string
_PLACEHOLDER = "unknown until run>"


class LiveRun:
    """Everything runs; failures are failures."""

    dry_run = False

    def __init__(self) -> None:
        self.findings: list[dict] = []
        self.strict = False

    def plans_instead_of_running(self, mutates: bool, args: Any) -> bool:
        return False

    def asks_operator(self) -> bool:
        return True

    def rolls_back(self) -> bool:
        return True

    def failure_is_finding(self) -> bool:
        """False: a failure stops the run unless the step ignores it or a rescue catches it."""
        return False

    def record_finding(self, step, message: str) -> None:  # pragma: no cover - never called
        raise AssertionError("a live run has no findings")

    def count_planned(self, step) -> None:
        pass

    def count_ran(self, step, elapsed: float) -> None:
        pass

    def end_data(self) -> dict:
        return {"dry_run": False, "estimate": None}


class Rehearsal(LiveRun):
    """``--dry-run``: probes run, changes are planned, failed probes are findings."""

    dry_run = True

    def __init__(self, strict: bool = False) -> None:
        super().__init__()
        self.strict = strict
        self.estimate = 0.0
        self._lock = threading.Lock()

    def plans_instead_of_running(self, mutates: bool, args: Any) -> bool:
        return mutates or has_unknown(args)

    def asks_operator(self) -> bool:
        return False

    def rolls_back(self) -> bool:
        return False

    def failure_is_finding(self) -> bool:
        """True: a finding may only mean an earlier change was not made, so the
        rehearsal goes on and what the step would return becomes unknown."""
        return True

    def record_finding(self, step, message: str) -> None:
        with self._lock:
            self.findings.append({"step": step.id, "name": step.label, "message": message,
                                  "at": str(step.pos)})

    def count_planned(self, step) -> None:
        with self._lock:
            self.estimate += step.expected_duration or 0

    def count_ran(self, step, elapsed: float) -> None:
        with self._lock:
            self.estimate += max(elapsed, step.expected_duration or 0)

    def end_data(self) -> dict:
        return {"dry_run": True, "estimate": round(self.estimate, 3)}


def policy_for(options) -> LiveRun:
    return Rehearsal(options.strict) if options.dry_run else LiveRun()


def has_unknown(value: Any) -> bool:
    """Whether a rendered value holds (or was built from) something only a real run knows."""
    if isinstance(value, str):
        return _PLACEHOLDER in value
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return isinstance(value, Unknown)
