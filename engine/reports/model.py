"""The run report as data (the ``json`` format, and the source of every other format).

Facts only, from the journal (and, for a drill's run, the drill record): who, when,
what each step did, how long against the RTO, what was found, approved, rolled back.
"""
from __future__ import annotations

from engine.journal import events as ev
from engine.reports.steps import step_details
from engine.reports.timeline import build_timeline
from engine.timestamps import seconds_between

#: keys a step's registered value may carry to bound the data loss (seconds); the first
#: is the engine's convention, the others what the shipped failover playbook registers
DATA_LOSS_KEYS = ("data_loss_seconds", "newest_commit_age", "lag_seconds")
SCHEMA_VERSION = 2


def build_report(summary, events: list, verification=None, drill: dict | None = None,
                 now: float | None = None) -> dict:
    """A JSON-ready description of the run."""
    first = events[0] if events else None
    start = first.data if first else {}
    end_event = _last_end(events)
    end = end_event.data if end_event else {}
    steps = step_details(events)
    return {
        "schema": SCHEMA_VERSION,
        "run": summary.as_dict(),
        "runbook": start.get("runbook", {}),
        "status": summary.status,
        "dry_run": bool(start.get("dry_run")),
        "drill_id": start.get("drill"),
        "started": first.ts if first else None,
        "ended": end_event.ts if end_event else None,
        "message": end.get("message", ""),
        "objectives": _objectives(start, end, events, summary.status),
        "estimate": _estimate(end) if start.get("dry_run") else None,
        "operators": _operators(events),
        "timeline": build_timeline(events, now),
        "steps": [s for s in steps if not s["rollback"]],
        "findings": end.get("findings") or [],
        "approvals": _approvals(events),
        "notes": [n | {"step": s["name"]} for s in steps for n in s["notes"]],
        "rollback": _rollback(events, steps),
        "resumes": _resumes(events),
        "journal": _journal(events, verification),
        "drill": drill,
    }


def _last_end(events: list):
    ends = [e for e in events if e.type in ev.RUN_ENDS]
    return ends[-1] if ends else None


def _objectives(start: dict, end: dict, events: list, status: str) -> dict:
    rto, rpo = start.get("rto"), start.get("rpo")
    elapsed = end.get("elapsed")
    if elapsed is None and events:
        elapsed = round(seconds_between(events[0].ts, events[-1].ts), 3)
    loss = _data_loss(events)
    return {
        "rto": rto, "achieved": elapsed, "active": end.get("active"),
        # only a completed run recovered: a failed one has no achieved time to judge
        "rto_met": False if end.get("rto_missed_by") else (elapsed <= rto if rto and elapsed is not None and status == "completed"
                    and not start.get("dry_run") else None),
        "rto_missed_by": end.get("rto_missed_by"),
        "rpo": rpo, "data_loss": loss,
        "rpo_met": None if rpo is None or loss is None else loss["seconds"] <= rpo,
    }


def _data_loss(events: list) -> dict | None:
    """The latest data-loss bound a step registered, if the runbook measures one."""
    found = None
    for event in events:
        if event.type == ev.STEP_SUCCEEDED and event.step:
            bound = _bound_in(event.data.get("value"))
            if bound is not None:
                found = bound | {"step": _name(event)}
    return found


def _bound_in(value) -> dict | None:
    if not isinstance(value, dict):
        return None
    candidates = [value] + [row for row in value.get("rows") or [] if isinstance(row, dict)][:1]
    for key in DATA_LOSS_KEYS:
        for where in candidates:
            if isinstance(where.get(key), (int, float)) and not isinstance(where.get(key), bool):
                return {"seconds": float(where[key]), "source": key}
    return None


def _estimate(end: dict) -> dict:
    return {"estimate": end.get("estimate"), "low": end.get("estimate_low", end.get("estimate")),
            "sources": end.get("estimate_sources") or {}}


def _operators(events: list) -> list[dict]:
    """Everyone who acted on the run and how, in order of first appearance."""
    people: dict[str, dict] = {}
    for event in events:
        role = _role(event)
        if not event.operator or role is None:
            continue
        person = people.setdefault(event.operator, {"name": event.operator, "roles": [],
                                                     "identity": "unverified", "host": event.host})
        if role not in person["roles"]:
            person["roles"].append(role)
        if event.data.get("signature_verified") or event.data.get("verified"):
            person["identity"] = "verified"
    return list(people.values())


def _role(event) -> str | None:
    return {ev.RUN_STARTED: "started", ev.RUN_RESUMED: "resumed",
            ev.APPROVAL_GRANTED: "approved", ev.OPERATOR_DECIDED: "decided",
            ev.OPERATOR_SKIPPED: "skipped a step", ev.OPERATOR_CONFIRMED: "confirmed",
            ev.OPERATOR_NOTE: "noted"}.get(event.type)


def _approvals(events: list) -> list[dict]:
    found = []
    for event in events:
        if event.type == ev.APPROVAL_REQUESTED:
            found.append({"ts": event.ts, "step": _name(event), "kind": "requested",
                          "operator": event.operator, "comment": event.data.get("message", ""),
                          "approvers": event.data.get("approvers") or [],
                          "min_approvals": event.data.get("min_approvals")})
        elif event.type == ev.APPROVAL_GRANTED:
            found.append({"ts": event.ts, "step": _name(event), "kind": "granted",
                          "operator": event.operator, "comment": event.data.get("comment", ""),
                          "identity": "verified" if event.data.get("signature_verified")
                          else "unverified"})
    return found


def _name(event) -> str:
    return (event.step or {}).get("name") or event.step_id or ""


def _rollback(events: list, steps: list) -> list[dict]:
    found = []
    for event in events:
        if event.type == ev.ROLLBACK_STARTED:
            found.append({"ts": event.ts, "reason": event.data.get("reason", ""),
                          "of": event.data.get("steps") or [], "ended": None, "steps": []})
        elif event.type == ev.ROLLBACK_COMPLETED and found:
            found[-1]["ended"] = event.ts
    undo = [s for s in steps if s["rollback"]]
    for entry in found:
        entry["steps"] = [s for s in undo if s["started"] and s["started"] >= entry["ts"]
                          and (entry["ended"] is None or s["started"] <= entry["ended"])]
    return found


def _resumes(events: list) -> list[dict]:
    return [{"ts": e.ts, "operator": e.operator,
             "in_doubt": [_in_doubt(d) for d in e.data.get("in_doubt") or []],
             "changes": e.data.get("changes") or [],
             "allow_changed": bool(e.data.get("allow_changed"))}
            for e in events if e.type == ev.RUN_RESUMED]


def _in_doubt(entry) -> str:
    """``slow: rerun (idempotent)`` from the resume's record of a step in doubt."""
    if not isinstance(entry, dict):
        return str(entry)
    why = f" ({entry['why']})" if entry.get("why") else ""
    return f"{entry.get('step', '?')}: {entry.get('decision', '?')}{why}"


def _journal(events: list, verification) -> dict:
    journal = {"events": len(events), "head": events[-1].hash if events else "",
               "verified": None, "problem": ""}
    if verification is not None:
        journal.update(verified=bool(verification.ok), problem=verification.problem or "",
                       first_bad_seq=verification.first_bad_seq)
    return journal
