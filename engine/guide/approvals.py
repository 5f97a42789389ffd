"""``runbook approve``: a (second) operator's approval, appended to a paused run's journal."""
from __future__ import annotations

import time

from engine.journal import events as ev
from engine.errors import RunHeld, UsageError
from engine.guide.operator import approvals_for
from engine.journal.store import open_store
from engine.guide.identity import operator_name

LOCK_WAIT = 3.0  # a resume that is just finishing releases the run quickly


def record_approval(state_dir: str | None, run_id: str, step_id: str, operator: str | None,
                    comment: str = "", state_url: str | None = None) -> str:
    """Record one approval; returns what to tell the approver. Refusals are exit 2."""
    who = operator_name(operator)
    journal, lock = _open_when_free(open_store(state_dir, state_url), run_id, who)
    try:
        request = _pending_request(journal.events, step_id, run_id)
        _check_allowed(request, journal.events, step_id, who)
        journal.append(ev.APPROVAL_GRANTED, request.step, {"comment": comment})
        granted = approvals_for(journal.events, step_id)
    finally:
        journal.close()
        lock.release()
    needed = int(request.data.get("min_approvals", 1))
    names = ", ".join(g["operator"] for g in granted)
    if len(granted) >= needed:
        return (f"approval recorded: {len(granted)} of {needed} ({names}) — quorum met; "
                f"continue with: runbook resume {run_id}")
    return (f"approval recorded: {len(granted)} of {needed} ({names}); "
            f"{needed - len(granted)} more needed")


def _open_when_free(store, run_id: str, who: str):
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            return store.open_run(run_id, who)
        except RunHeld:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def _pending_request(events, step_id: str, run_id: str):
    for event in reversed(events):
        if event.type == ev.APPROVAL_REQUESTED and event.step_id == step_id:
            return event
    raise UsageError(f"step '{step_id}' of run {run_id} is not waiting for an approval")


def _check_allowed(request, events, step_id: str, who: str) -> None:
    approvers = request.data.get("approvers") or []
    if approvers and who not in approvers:
        raise UsageError(f"{who} may not approve '{step_id}': approvers are {', '.join(approvers)}")
    if request.data.get("separate_duty") and who == request.data.get("requested_by"):
        raise UsageError(f"{who} started this run and may not approve it (separate duty)")
    if any(g["operator"] == who for g in approvals_for(events, step_id)):
        raise UsageError(f"{who} has already approved '{step_id}'")
