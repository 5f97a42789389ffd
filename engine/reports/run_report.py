"""``runbook report RUN_ID --format md|html|json|junit``: a run's record for the post-mortem.

Built from the journal's events only (already redacted when they were written).
"""
from __future__ import annotations

import html
import json
from xml.etree import ElementTree as ET

from engine.journal import events as ev
from engine.durations import format_duration
from engine.journal.views import step_views


def build_report(summary, events: list) -> dict:
    """A JSON-ready description of the run."""
    notes = [{"ts": e.ts, "operator": e.operator, "step": e.step_id,
              "text": e.data.get("note") or e.data.get("evidence")}
             for e in events if e.type == ev.OPERATOR_NOTE]
    approvals = [{"ts": e.ts, "operator": e.operator, "step": e.step_id,
                  "comment": e.data.get("comment", "")}
                 for e in events if e.type == ev.APPROVAL_GRANTED]
    ends = [e for e in events if e.type in ev.RUN_ENDS]
    last = ends[-1].data if ends else {}
    return {
        "run": summary.as_dict(),
        "rto": last.get("rto"),
        "message": last.get("message", ""),
        "findings": last.get("findings") or [],
        "operators": sorted({e.operator for e in events}),
        "steps": [vars(view) for view in step_views(events)],
        "notes": notes,
        "approvals": approvals,
        "rollback": [e.data for e in events if e.type == ev.ROLLBACK_STARTED],
        "events": len(events),
        "head": events[-1].hash if events else "",
    }


def render(report: dict, fmt: str) -> str:
    return {"json": _json, "md": _markdown, "html": _html, "junit": _junit}[fmt](report)


def _json(report: dict) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)


def _markdown(report: dict) -> str:
    run = report["run"]
    rto = f" of RTO {format_duration(report['rto'])}" if report.get("rto") else ""
    lines = [f"# Run {run['run_id']}: {run['runbook']}", "",
             f"- **Status:** {run['status']}" + (" (dry-run)" if run.get("dry_run") else ""),
             f"- **Started:** {run['started']} by {run['operator']}",
             f"- **Duration:** {format_duration(run['duration'])}{rto}",
             f"- **Operators:** {', '.join(report['operators'])}",
             f"- **Journal:** {report['events']} events, head `{report['head']}`", ""]
    if report.get("message"):
        lines += [f"> {report['message']}", ""]
    lines += ["## Steps", "", "| Status | Step | Attempts | Duration | By | Details |",
              "|---|---|---|---|---|---|"]
    for step in report["steps"]:
        details = "; ".join([step["message"]] * bool(step["message"]) + step["verifications"])
        lines.append(f"| {step['status']} | {_cell(step['name'])} | {step['attempts']} | "
                     f"{format_duration(step['duration'])} | {', '.join(step['operators'])} | "
                     f"{_cell(details)} |")
    for title, key, fields in (("Operator notes", "notes", ("operator", "step", "text")),
                               ("Approvals", "approvals", ("operator", "step", "comment")),
                               ("Findings", "findings", ("name", "at", "message"))):
        if report.get(key):
            lines += ["", f"## {title}", ""]
            lines += [f"- {item.get('ts', '')} " + " — ".join(str(item.get(f) or "") for f in fields)
                      for item in report[key]]
    if report.get("rollback"):
        lines += ["", "## Rollback", ""]
        lines += [f"- {r.get('reason', '')}: {', '.join(r.get('steps', []))}" for r in report["rollback"]]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _html(report: dict) -> str:
    run = report["run"]
    rows = "".join(
        f"<tr class='{html.escape(s['status'].split()[0])}'><td>{html.escape(s['status'])}</td>"
        f"<td>{html.escape(s['name'])}</td><td>{s['attempts']}</td>"
        f"<td>{format_duration(s['duration'])}</td><td>{html.escape(', '.join(s['operators']))}</td>"
        f"<td>{html.escape('; '.join([s['message']] * bool(s['message']) + s['verifications']))}</td></tr>"
        for s in report["steps"])
    notes = "".join(f"<li>{html.escape(n['operator'])}: {html.escape(str(n['text']))}</li>"
                    for n in report["notes"])
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Run {html.escape(run['run_id'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}}.failed td{{background:#fdd}}
.ok td,.changed td{{background:#efe}}.skipped td{{background:#eef}}</style></head>
<body><h1>Run {html.escape(run['run_id'])}: {html.escape(run['runbook'])}</h1>
<p>Status <b>{html.escape(run['status'])}</b>, started {html.escape(run['started'])} by
{html.escape(run['operator'])}, duration {format_duration(run['duration'])}.</p>
<p>{html.escape(report.get('message') or '')}</p>
<table><tr><th>Status</th><th>Step</th><th>Attempts</th><th>Duration</th><th>By</th><th>Details</th></tr>
{rows}</table>
{'<h2>Operator notes</h2><ul>' + notes + '</ul>' if notes else ''}
<p>Journal: {report['events']} events, head <code>{report['head']}</code></p>
</body></html>
"""


def _junit(report: dict) -> str:
    run = report["run"]
    steps = report["steps"]
    suite = ET.Element("testsuite", name=run["runbook"], tests=str(len(steps)),
                       failures=str(sum(s["status"].startswith("failed") for s in steps)),
                       skipped=str(sum(s["status"] in ("skipped", "planned") for s in steps)),
                       time=str(run["duration"] or 0), id=run["run_id"])
    for step in steps:
        case = ET.SubElement(suite, "testcase", classname=run["runbook"], name=step["name"],
                             time=str(step["duration"] or 0))
        if step["status"].startswith("failed") or step["status"] == "in doubt":
            ET.SubElement(case, "failure", message=step["message"] or step["status"])
        elif step["status"] in ("skipped", "planned", "waiting"):
            ET.SubElement(case, "skipped", message=step["message"] or step["status"])
    suites = ET.Element("testsuites")
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode") + "\n"
