"""``runbook history RUNBOOK``: the real runs and drills of a runbook, achieved time vs RTO.

From any store (file or PostgreSQL: both list runs and give their events). Rehearsals
(dry-runs) are not recoveries and are left out; a drill's real run carries the
rehearsal's estimate from its drill record.
"""
from __future__ import annotations

from pathlib import Path

from engine.durations import format_duration
from engine.journal import events as ev
from engine.reports.run_report import drill_record, state_dir_of

CHART_WIDTH, CHART_HEIGHT, CHART_LEFT = 900, 260, 60


def runbook_name(arg: str) -> str:
    """A runbook file's ``name:``, or the argument itself taken as a name."""
    path = Path(arg)
    if path.is_file():
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            data = None
        if isinstance(data, dict) and data.get("name"):
            return str(data["name"])
    return arg


def history(store, name: str) -> list[dict]:
    """Oldest first: one entry per real run (drill runs included) of runbook ``name``."""
    entries = []
    for summary in store.list_runs():
        if summary.runbook != name or summary.dry_run:
            continue
        entries.append(_entry(store, summary))
    return entries


def _entry(store, summary) -> dict:
    events = store.events(summary.run_id)
    start = events[0].data if events else {}
    ends = [e for e in events if e.type in ev.RUN_ENDS]
    end = ends[-1].data if ends else {}
    rto = start.get("rto")
    achieved = end.get("elapsed", summary.duration)
    record = drill_record(state_dir_of(store), summary.drill, summary.run_id)
    return {
        "run_id": summary.run_id, "started": summary.started, "operator": summary.operator,
        "status": summary.status, "kind": "drill" if summary.drill else "run",
        "drill_id": summary.drill, "achieved": achieved, "rto": rto,
        "rto_met": _met(rto, achieved, summary.status, end),
        "rto_missed_by": end.get("rto_missed_by"),
        "estimate": (record or {}).get("estimate") if record and
        record.get("run_id") == summary.run_id else None,
    }


def _met(rto, achieved, status: str, end: dict) -> bool | None:
    """Judged only for a run that recovered (completed), or one that overran the RTO."""
    if end.get("rto_missed_by"):
        return False
    if not rto or achieved is None or status != "completed":
        return None
    return achieved <= rto


def render_text(name: str, entries: list[dict]) -> str:
    if not entries:
        return f"no real runs or drills of '{name}' (rehearsals are not listed)\n"
    lines = [f"History of '{name}': {len(entries)} run(s)",
             f"{'RUN ID':<26} {'KIND':<6} {'STATUS':<12} {'STARTED':<25} {'ACHIEVED':>9} "
             f"{'RTO':>8} {'VERDICT':<16} ESTIMATE"]
    for e in entries:
        lines.append(f"{e['run_id']:<26} {e['kind']:<6} {e['status']:<12} {e['started']:<25} "
                     f"{format_duration(e['achieved']):>9} {format_duration(e['rto']):>8} "
                     f"{verdict(e):<16} {format_duration(e['estimate']) if e['estimate'] else ''}")
    return "\n".join(lines) + "\n"


def verdict(entry: dict) -> str:
    if entry["rto_met"] is None:
        return "no RTO" if not entry["rto"] else "not recovered"
    if entry["rto_met"]:
        return "met"
    return "MISSED" + (f" by {format_duration(entry['rto_missed_by'])}"
                       if entry.get("rto_missed_by") else "")


def trend_chart(entries: list[dict]) -> dict:
    """Bar geometry for the HTML trend: one bar per run, the RTO as a line."""
    values = [e["achieved"] or 0 for e in entries] + [e["rto"] or 0 for e in entries]
    top = max(values + [1.0]) * 1.1
    inner = CHART_HEIGHT - 40
    step = (CHART_WIDTH - CHART_LEFT - 10) / max(len(entries), 1)
    bars = []
    for index, e in enumerate(entries):
        h = round((e["achieved"] or 0) / top * inner, 1)
        bars.append({"x": round(CHART_LEFT + index * step + step * 0.15, 1),
                     "w": round(step * 0.7, 1), "y": round(10 + inner - h, 1), "h": max(h, 1),
                     "kind": e["kind"], "met": e["rto_met"], "entry": e,
                     "label": f"{e['run_id']}: {format_duration(e['achieved'])} ({verdict(e)})"})
    rtos = [{"y": round(10 + inner - e["rto"] / top * inner, 1),
             "x": round(CHART_LEFT + i * step, 1), "w": round(step, 1)}
            for i, e in enumerate(entries) if e["rto"]]
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "left": CHART_LEFT, "bars": bars,
            "rto": rtos, "top": top, "axis_y": 10 + inner,
            "ticks": [{"y": round(10 + inner - f * inner, 1), "label": format_duration(top * f)}
                      for f in (0, 0.25, 0.5, 0.75, 1.0)]}
