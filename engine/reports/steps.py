"""Each step of a run as the report tells it: times, plan, result, checks, evidence, people.

Built from the journal only (its events are already masked when written).
"""
from __future__ import annotations

from engine.journal import events as ev
from engine.reports.timeline import step_key

_STATUS = {ev.STEP_STARTED: "in doubt", ev.STEP_SUCCEEDED: "ok", ev.STEP_FAILED: "failed",
           ev.STEP_SKIPPED: "skipped", ev.STEP_PLANNED: "planned", ev.STEP_PAUSED: "waiting"}


def step_details(events: list) -> list[dict]:
    """One entry per step invocation, in the order they first appeared."""
    steps: dict[str, dict] = {}
    for event in events:
        if not event.step:
            continue
        key = step_key(event.step)
        step = steps.get(key) or steps.setdefault(key, _new(key, event.step))
        _apply(step, event)
    return list(steps.values())


def _new(key: str, ref: dict) -> dict:
    return {"key": key, "id": ref.get("id"), "name": ref.get("name") or ref.get("id"),
            "path": str(ref.get("path", "")), "target": ref.get("target"),
            "item": ref.get("item"), "rollback": ".rollback" in str(ref.get("path", "")),
            "status": "pending", "action": "", "args": None, "started": None, "ended": None,
            "attempts": 0, "duration": None, "expected": None, "plan": "", "message": "",
            "changed": False, "retries": [], "verifications": [], "checklist": [],
            "evidence": None, "notes": [], "decisions": [], "approvals": [], "operators": [],
            "runs": 0}


def _apply(step: dict, event) -> None:
    data = event.data
    if event.type in _STATUS:
        step["status"] = _status(event)
    handler = _HANDLERS.get(event.type)
    if handler:
        handler(step, event, data)
    if event.operator and event.operator not in step["operators"] and (
            event.type.startswith(("operator.", "approval.")) or event.type == ev.STEP_STARTED):
        step["operators"].append(event.operator)


def _status(event) -> str:
    status = _STATUS[event.type]
    if event.type == ev.STEP_SUCCEEDED and event.data.get("changed"):
        return "changed"
    if event.type == ev.STEP_FAILED and event.data.get("finding"):
        return "finding"
    if event.type == ev.STEP_FAILED and event.data.get("ignored"):
        return "failed (ignored)"
    return status


def _started(step, event, data) -> None:
    step["started"] = step["started"] or event.ts
    step["runs"] += 1
    step["action"] = data.get("action", step["action"])
    step["args"] = data.get("args", step["args"])


def _ended(step, event, data) -> None:
    step["ended"] = event.ts
    if event.type not in (ev.STEP_SKIPPED, ev.STEP_PAUSED, ev.STEP_PLANNED):
        step["attempts"] += data.get("attempts", 1)
    step["duration"] = data.get("elapsed", step["duration"])
    step["expected"] = data.get("expected_duration") or step["expected"]
    step["message"] = str(data.get("message") or data.get("reason") or "")
    step["changed"] = bool(data.get("changed"))
    if event.type == ev.STEP_PLANNED:
        step["plan"] = str(data.get("plan", ""))
        step["action"] = data.get("action", step["action"])
        step["args"] = data.get("args", step["args"])
        step["estimate"] = data.get("estimate")
        step["estimate_source"] = data.get("estimate_source")
    value = data.get("value") if isinstance(data.get("value"), dict) else {}
    if value.get("evidence"):
        step["evidence"] = value["evidence"]


def _retry(step, event, data) -> None:
    step["retries"].append({"ts": event.ts, "attempt": data.get("attempt"),
                            "message": data.get("message", "")})


def _verified(step, event, data) -> None:
    step["verifications"].append({"ts": event.ts, "that": " and ".join(data.get("that", [])),
                                  "passed": event.type == ev.VERIFY_PASSED,
                                  "message": data.get("message", "")})


def _confirmed(step, event, data) -> None:
    step["checklist"].append({"ts": event.ts, "operator": event.operator,
                              "item": data.get("item") or "(step confirmed)",
                              "scripted": bool(data.get("scripted"))})


def _note(step, event, data) -> None:
    if data.get("evidence"):
        step["evidence"] = data["evidence"]
    text = data.get("note") or data.get("evidence")
    if text:
        step["notes"].append({"ts": event.ts, "operator": event.operator, "text": str(text)})


def _decided(step, event, data) -> None:
    decision = data.get("decision") or ("skip: " + str(data.get("reason", "")))
    step["decisions"].append({"ts": event.ts, "operator": event.operator,
                              "decision": str(decision), "scripted": bool(data.get("scripted"))})


def _approval(step, event, data) -> None:
    step["approvals"].append({"ts": event.ts, "operator": event.operator,
                              "comment": data.get("comment", "")})


def _rescued(step, event, data) -> None:
    step["status"] = "rescued"


_HANDLERS = {ev.STEP_STARTED: _started, ev.STEP_RETRY: _retry, ev.VERIFY_PASSED: _verified,
             ev.VERIFY_FAILED: _verified, ev.OPERATOR_CONFIRMED: _confirmed,
             ev.OPERATOR_NOTE: _note, ev.OPERATOR_DECIDED: _decided,
             ev.OPERATOR_SKIPPED: _decided, ev.APPROVAL_GRANTED: _approval,
             ev.STEP_RESCUED: _rescued,
             **{end: _ended for end in ev.STEP_ENDS}}
