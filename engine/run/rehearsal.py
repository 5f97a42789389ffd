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
from collections import Counter
from typing import Any

from engine.actions.resources import overlaps
from engine.run.estimates import Estimator, StepEstimate
from engine.unknowns import UNKNOWN_MARK, Unknown

#: what ``str(Unknown)`` ends with inside a larger string
_PLACEHOLDER = UNKNOWN_MARK + ">"
#: why a step whose arguments are known only at run time is planned
UNKNOWN_ARGS = "its arguments are known only at run time"


class LiveRun:
    """Everything runs; failures are failures."""

    dry_run = False
    #: whether it needs each invocation's resource keys (``Action.touches``)
    tracks_changes = False

    def __init__(self) -> None:
        self.findings: list[dict] = []
        self.strict = False

    def plan_reason(self, step, mutates: bool, args: Any, touched: set[str],
                    accepts_unknowns: bool = False) -> str | None:
        """None: run the invocation. A string: only plan it ("" for a change; else why a
        read-only step is planned)."""
        return None

    def record_change(self, step, touched: set[str], name: str | None = None) -> None:
        pass

    def changed_by(self, touched: set[str]) -> str | None:
        return None

    def asks_operator(self) -> bool:
        return True

    def rolls_back(self) -> bool:
        return True

    def failure_is_finding(self, step) -> bool:
        """False: a failure stops the run unless the step ignores it or a rescue catches it."""
        return False

    def record_finding(self, step, message: str, where: str = "") -> None:
        raise AssertionError("a live run has no findings")  # a plan runs in rehearsals only

    def count_planned(self, step, conditional: bool = False) -> StepEstimate | None:
        return None

    def count_ran(self, step, elapsed: float) -> None:
        pass

    def end_data(self) -> dict:
        return {"dry_run": False, "estimate": None}


class Rehearsal(LiveRun):
    """``--dry-run``: probes run, changes are planned, failed probes are findings."""

    dry_run = True
    tracks_changes = True

    def __init__(self, strict: bool = False, estimator: Estimator | None = None) -> None:
        super().__init__()
        self.strict = strict
        self.estimator = estimator or Estimator()
        self.estimate = 0.0  # the most it may take (every conditional step runs)
        self.estimate_low = 0.0  # the least (no conditional step runs)
        self.sources: Counter = Counter()
        self._lock = threading.Lock()
        self._changed: list[tuple[str, set[str]]] = []  # (step label, resource keys)

    def plan_reason(self, step, mutates: bool, args: Any, touched: set[str],
                    accepts_unknowns: bool = False) -> str | None:
        if has_unknown(args) and not accepts_unknowns:
            return UNKNOWN_ARGS
        if step.rehearse == "run":
            return None
        if step.rehearse == "plan" or mutates:
            return ""
        changed = self.changed_by(touched)
        if changed is not None:
            return f"would check after '{changed}' (which this rehearsal only plans)"
        return None

    def record_change(self, step, touched: set[str], name: str | None = None) -> None:
        """A planned change: later read-only steps on the same things are planned too.
        ``name``: the step's rendered name (a templated name says which object it is)."""
        with self._lock:
            self._changed.append((name or step.label, set(touched)))

    def changed_by(self, touched: set[str]) -> str | None:
        """The latest planned step that changes something ``touched`` names."""
        with self._lock:
            for label, keys in reversed(self._changed):
                if any(overlaps(a, b) for a in touched for b in keys):
                    return label
        return None

    def asks_operator(self) -> bool:
        return False

    def rolls_back(self) -> bool:
        return False

    def failure_is_finding(self, step) -> bool:
        """A failed probe is a finding (the rehearsal goes on; what it would return becomes
        unknown) — unless the step ignores errors: then the failure is what the runbook
        expects (a gate such as "the primary is down") and its real result is kept."""
        return not step.ignore_errors

    def record_finding(self, step, message: str, where: str = "") -> None:
        with self._lock:
            self.findings.append({"step": step.id, "name": step.label + where,
                                  "message": message, "at": str(step.pos)})

    def count_planned(self, step, conditional: bool = False) -> StepEstimate:
        """Add a planned step to the estimate; one that may not run (a ``when`` only the
        real run decides) widens the range instead."""
        estimate = self.estimator.for_step(step)
        with self._lock:
            self.estimate += estimate.seconds
            if not conditional:
                self.estimate_low += estimate.seconds
            self.sources[estimate.source.split(" of ")[0]] += 1
        return estimate

    def count_ran(self, step, elapsed: float) -> None:
        """A probe that ran: its earlier runs' median if there are some, else what it took."""
        estimate = self.estimator.for_step(step)
        seconds = estimate.seconds if estimate.source.startswith("median") else elapsed
        with self._lock:
            self.estimate += seconds
            self.estimate_low += seconds
            self.sources["measured now" if seconds == elapsed else "median"] += 1

    def end_data(self) -> dict:
        return {"dry_run": True, "estimate": round(self.estimate, 3),
                "estimate_low": round(self.estimate_low, 3),
                "estimate_sources": dict(self.sources)}


def policy_for(options, history: dict | None = None) -> LiveRun:
    """The run's policy; a rehearsal estimates from ``history`` (earlier real runs)."""
    return Rehearsal(options.strict, Estimator(history)) if options.dry_run else LiveRun()


def has_unknown(value: Any) -> bool:
    """Whether a rendered value holds (or was built from) something only a real run knows."""
    if isinstance(value, str):
        return _PLACEHOLDER in value
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return isinstance(value, Unknown)
