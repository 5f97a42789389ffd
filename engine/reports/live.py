"""What a run is doing right now, from its journal: for ``runbook serve``'s live page.

The current step, who is waiting for what (approvals pending, manual steps, a
paused run), the RTO clock, and the timeline so far.
"""
from __future__ import annotations

import time

from engine.journal import events as ev
from engine.reports.timeline import build_timeline, step_key
from engine.timestamps import epoch


def live_state(summary, events: list, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    start = events[0] if events else None
    started_at = epoch(start.ts) if start else now
    ended = summary.status not in ("running", "interrupted") or not events
    elapsed = _elapsed(events, ended, now - started_at)
    open_steps = _open_steps(events)
    return {
        "run": summary.as_dict(), "status": summary.status, "seq": len(events),
        "started_epoch": started_at, "elapsed": elapsed, "ticking": not ended,
        "rto": start.data.get("rto") if start else None,
        "current": [s for s in open_steps if s["state"] == "running"],
        "waiting": _waiting(events, open_steps, summary),
        "timeline": build_timeline(events, now=None if ended else elapsed),
        "last": [_line(e) for e in events[-8:]][::-1],
    }


def _elapsed(events: list, ended: bool, wall: float) -> float:
    if ended:
        ends = [e for e in events if e.type in ev.RUN_ENDS]
        if ends and ends[-1].data.get("elapsed") is not None:
            return ends[-1].data["elapsed"]
    return round(max(wall, 0.0), 1)


def _open_steps(events: list) -> list[dict]:
    """Steps started (or paused) and not ended, in order."""
    found: dict[str, dict] = {}
    for event in events:
        if not event.step:
            continue
        key = step_key(event.step)
        if event.type == ev.STEP_STARTED:
            found[key] = {"key": key, "name": event.step.get("name") or key, "since": event.ts,
                          "action": event.data.get("action", ""), "state": "running",
                          "operator": event.operator, "retries": 0}
        elif event.type == ev.STEP_RETRY and key in found:
            found[key]["retries"] += 1
        elif event.type == ev.STEP_PAUSED and key in found:
            found[key].update(state="waiting", reason=event.data.get("reason", ""),
                              hint=event.data.get("hint", ""))
        elif event.type in ev.STEP_ENDS:
            found.pop(key, None)
    return list(found.values())


def _waiting(events: list, open_steps: list, summary) -> list[str]:
    """Plain sentences: who the run waits for, and for what."""
    lines = []
    granted: dict[str, list[str]] = {}
    for event in events:
        if event.type == ev.APPROVAL_GRANTED:
            granted.setdefault(event.step_id, []).append(event.operator)
    for step in open_steps:
        if step["action"] == "approve":
            request = _last_request(events, step["key"])
            who = ", ".join(request.get("approvers") or []) or "an approver"
            have = granted.get(step["key"].split("@")[0].split("#")[0], [])
            lines.append(f"approval of '{step['name']}': {len(have)} of "
                         f"{request.get('min_approvals', 1)} from {who}"
                         + (f" (approved by {', '.join(have)})" if have else ""))
        elif step["action"] == "manual":
            lines.append(f"manual step '{step['name']}': waiting for {step['operator']} to "
                         "confirm it")
        elif step["state"] == "waiting":
            lines.append(f"'{step['name']}': {step.get('reason', '')}")
    if summary.status == "paused" and not lines:
        ends = [e for e in events if e.type == ev.RUN_PAUSED]
        if ends:
            lines.append(str(ends[-1].data.get("message", "")).splitlines()[0])
    return lines


def _last_request(events: list, key: str) -> dict:
    for event in reversed(events):
        if event.type == ev.APPROVAL_REQUESTED and event.step and step_key(event.step) == key:
            return event.data
    return {}


def _line(event) -> dict:
    step = (event.step or {}).get("name") or ""
    data = event.data
    what = data.get("message") or data.get("reason") or data.get("comment") or data.get("plan")
    return {"ts": event.ts, "type": event.type, "step": step, "operator": event.operator,
            "what": str(what or "").splitlines()[0] if what else ""}
