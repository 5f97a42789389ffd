"""The facts a post-mortem draft needs, taken from a run report (seed 003's template).

Only what the journal proves goes in: failures, retries, waits, overruns, rollback,
the RTO and RPO verdicts. Severity, impact on users, root cause and lessons are
judgement: the draft leaves them as placeholders for people.
"""
from __future__ import annotations

from engine.durations import format_duration

#: a wait for people (pause, approval) this long is worth a line in "what went wrong"
LONG_WAIT = 300.0
#: a step that took this many times its expected duration overran
OVERRUN = 1.5


def facts(report: dict) -> dict:
    return {"went_well": went_well(report), "went_wrong": went_wrong(report),
            "actions": action_items(report), "events": timeline(report),
            "changed": [s for s in report["steps"] if s["changed"]]}


def went_well(report: dict) -> list[str]:
    o, steps = report["objectives"], report["steps"]
    lines = []
    if report["status"] == "completed":
        lines.append(f"The runbook completed: {len(steps)} step(s).")
    if o["rto_met"]:
        lines.append(f"Recovered in {format_duration(o['achieved'])}, within the RTO of "
                     f"{format_duration(o['rto'])}.")
    if o["rpo_met"]:
        lines.append(f"Data loss at most {format_duration(o['data_loss']['seconds'])}, within "
                     f"the RPO of {format_duration(o['rpo'])}.")
    clean = [s for s in steps if s["status"] in ("ok", "changed") and s["attempts"] == 1]
    if clean:
        lines.append(f"{len(clean)} step(s) succeeded at the first attempt.")
    checks = [v for s in steps for v in s["verifications"] if v["passed"]]
    if checks:
        lines.append(f"{len(checks)} verification(s) passed.")
    if report["journal"]["verified"]:
        lines.append("The journal's hash chain verifies: this record is complete and untampered.")
    return lines


def went_wrong(report: dict) -> list[str]:
    lines = []
    for step in report["steps"]:
        lines += _step_problems(step)
    for band in report["timeline"]["bands"]:
        if band["kind"] == "interrupted":
            lines.append(f"The run was interrupted for {band['duration']}: {band['title']}.")
        elif band["end"] - band["start"] >= LONG_WAIT:
            lines.append(f"The run waited {band['duration']} for people: {band['title']}.")
    for finding in report["findings"]:
        lines.append(f"Finding at {finding.get('name')}: {finding.get('message')}.")
    for rollback in report["rollback"]:
        lines.append(f"Rolled back ({rollback['reason']}): undid {', '.join(rollback['of'])}.")
    o = report["objectives"]
    if o["rto_met"] is False:
        lines.append(f"The RTO of {format_duration(o['rto'])} was missed: recovery took "
                     f"{format_duration(o['achieved'])}.")
    if o["rpo_met"] is False:
        lines.append(f"Data loss of up to {format_duration(o['data_loss']['seconds'])} exceeds "
                     f"the RPO of {format_duration(o['rpo'])}.")
    return lines


def _step_problems(step: dict) -> list[str]:
    name, lines = step["name"], []
    if step["retries"]:
        why = "; ".join(sorted({r["message"] for r in step["retries"]}))
        lines.append(f"'{name}' needed {step['attempts']} attempts ({why}).")
    if step["status"] in ("failed", "in doubt", "finding"):
        lines.append(f"'{name}' {step['status']}: {step['message']}.")
    elif step["status"] == "failed (ignored)":
        lines.append(f"'{name}' failed and was ignored (ignore_errors): {step['message']}.")
    if step["runs"] > 1 and not step["retries"]:
        lines.append(f"'{name}' was started {step['runs']} times (resumed or retried by an "
                     "operator).")
    for check in step["verifications"]:
        if not check["passed"]:
            lines.append(f"'{name}': verification `{check['that']}` failed: {check['message']}.")
    if step["expected"] and step["duration"] and step["duration"] > OVERRUN * step["expected"]:
        lines.append(f"'{name}' took {format_duration(step['duration'])}, expected "
                     f"{format_duration(step['expected'])}.")
    for decision in step["decisions"]:
        lines.append(f"'{name}': {decision['operator']} decided {decision['decision']}.")
    return lines


def action_items(report: dict) -> list[str]:
    items = []
    for step in report["steps"]:
        if step["retries"] or step["status"] in ("failed", "failed (ignored)", "in doubt"):
            items.append(f"Find out why '{step['name']}' failed ({step['message'] or 'retried'}) "
                         "and fix the cause or the runbook.")
        if step["expected"] and step["duration"] and step["duration"] > OVERRUN * step["expected"]:
            items.append(f"Update expected_duration of '{step['name']}' or make it faster.")
    if report["objectives"]["rto_met"] is False:
        items.append("Shorten the recovery or renegotiate the RTO.")
    if report["objectives"]["rpo"] is not None and report["objectives"]["data_loss"] is None:
        items.append("Measure the data loss in the runbook (register data_loss_seconds).")
    return items


def timeline(report: dict) -> list[dict]:
    """Timestamped facts, oldest first: run start/resume/end, steps, waits, approvals."""
    rows = [{"ts": report["started"], "what": f"Runbook '{report['run']['runbook']}' started by "
                                             f"{report['run']['operator']}"}]
    rows += [{"ts": m["ts"], "what": f"Run resumed by {m['operator']}"} for m in report["resumes"]]
    for step in report["steps"]:
        if step["ended"]:
            rows.append({"ts": step["ended"], "what": f"{step['name']}: {step['status']}"
                         + (f" — {step['message']}" if step["message"] else "")})
    rows += [{"ts": a["ts"], "what": f"Approval {a['kind']} ({a['step']}) by {a['operator']}"
              + (f": {a['comment']}" if a["comment"] else "")} for a in report["approvals"]]
    rows += [{"ts": r["ts"], "what": f"Rollback started: {r['reason']}"} for r in report["rollback"]]
    if report["ended"]:
        rows.append({"ts": report["ended"], "what": f"Run ended: {report['status']}"})
    return sorted((r for r in rows if r["ts"]), key=lambda r: r["ts"])
