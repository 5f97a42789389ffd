"""``runbook report RUN_ID --format md|html|json|junit|postmortem``: a run's record.

Built from the journal's events only (already redacted when they were written), its
hash-chain verification, and for a drill's run the drill record
(``STATE_DIR/drills/DRILL_ID.json``, written by ``runbook drill``).
"""
from __future__ import annotations

import json
from pathlib import Path

from engine.reports.model import build_report
from engine.reports.render import FORMATS, render

__all__ = ["FORMATS", "build_report", "report_for", "render", "drill_record", "state_dir_of"]


def report_for(store, run_id: str) -> dict:
    """The report of one run of ``store`` (file or PostgreSQL)."""
    events = store.events(run_id)
    summary = store.summary(run_id)
    drill_id = events[0].data.get("drill") if events else None
    return build_report(summary, events, store.verify(run_id),
                        drill_record(state_dir_of(store), drill_id, run_id))


def state_dir_of(store) -> Path:
    """This machine's state directory (drill records live there for both stores)."""
    return Path(getattr(store, "state_dir", None) or getattr(store, "local_dir"))


def drill_record(state_dir: Path, drill_id: str | None, run_id: str | None = None) -> dict | None:
    """The drill record a run belongs to, or None (no drill, or its record is gone)."""
    if not drill_id:
        return None
    path = Path(state_dir) / "drills" / f"{drill_id}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if run_id and run_id not in (record.get("run_id"), record.get("dry_run_id")):
        return record | {"note": f"run {run_id} is one of the drill's set-up runs"}
    return record
