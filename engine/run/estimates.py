"""How long a runbook will take, from evidence: each step's median duration in earlier
completed real runs of the same runbook (same name and step id, same state store), else
the author's ``expected_duration``, else a default — and which of these it is."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from engine.journal import events as ev
from engine.timestamps import epoch

DEFAULT_SECONDS = 1.0  # a step nobody measured or estimated
HISTORY_RUNS = 10  # the newest completed real runs that count


@dataclass(frozen=True)
class StepEstimate:
    seconds: float
    source: str  # "median of 5 runs" | "author's estimate" | "default"


class Estimator:
    def __init__(self, history: dict[str, list[float]] | None = None) -> None:
        self.history = history or {}

    def for_step(self, step) -> StepEstimate:
        measured = self.history.get(step.id)
        if measured:
            runs = len(measured)
            return StepEstimate(statistics.median(measured),
                                f"median of {runs} run{'s' if runs > 1 else ''}")
        if step.expected_duration is not None:
            return StepEstimate(step.expected_duration, "author's estimate")
        return StepEstimate(DEFAULT_SECONDS, "default")


def step_history(store, runbook_name: str, limit: int = HISTORY_RUNS) -> dict[str, list[float]]:
    """Durations per step id in the newest completed real runs of a runbook."""
    try:
        summaries = store.list_runs()
    except Exception:  # no history is no reason to refuse a rehearsal
        return {}
    runs = [s for s in summaries
            if s.runbook == runbook_name and s.status == "completed" and not s.dry_run]
    runs.sort(key=lambda s: s.started, reverse=True)
    history: dict[str, list[float]] = {}
    for summary in runs[:limit]:
        for step_id, seconds in step_durations(store.events(summary.run_id)).items():
            history.setdefault(step_id, []).append(seconds)
    return history


def step_durations(events) -> dict[str, float]:
    """Wall time per step id: from its first start to its last end, so retries, ``until``
    and ``verify`` waits, loop items and targets all count."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for event in events:
        step_id = event.step_id
        if step_id is None:
            continue
        if event.type == ev.STEP_STARTED:
            first.setdefault(step_id, epoch(event.ts))
        elif event.type == ev.STEP_SUCCEEDED and step_id in first:
            last[step_id] = epoch(event.ts)
    return {step_id: max(0.0, last[step_id] - first[step_id]) for step_id in last}
