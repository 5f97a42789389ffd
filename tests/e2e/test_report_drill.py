"""A drill's run in the report and in ``runbook history``: the estimate-vs-measured figures
come from the drill record ``runbook drill`` writes (STATE_DIR/drills/DRILL_ID.json)."""
from __future__ import annotations

import json

from helpers.run import runbook_cli, write_runbook

RUNBOOK = """\
name: Drilled
rto: 1m
steps:
  - name: Only
    command: [echo, one]
"""


def drilled_run(tmp_path) -> None:
    from engine.run.options import RunOptions
    from engine.run.start import RunRequest, start_run

    path = write_runbook(tmp_path, RUNBOOK, "drilled.yaml")
    for run_id, dry in (("d-rehearsal", True), ("d-real", False)):
        request = RunRequest(runbook=str(path), inventories=[], extra=[],
                             options=RunOptions(dry_run=dry), run_id=run_id,
                             state_dir=str(tmp_path / "state"), operator="ci", drill="drill-1")
        assert start_run(request, []).outcome.status.value == "completed"
    record = {"playbook": str(path), "drill_id": "drill-1", "ok": True, "problems": [],
              "dry_run_id": "d-rehearsal", "run_id": "d-real", "estimate": 12.0,
              "estimate_low": 10.0, "measured": 0.4, "rto": 60.0, "status": "completed"}
    (tmp_path / "state" / "drills").mkdir(parents=True)
    (tmp_path / "state" / "drills" / "drill-1.json").write_text(json.dumps(record))


def test_report_of_a_drill_run_compares_estimate_and_measured(tmp_path):
    drilled_run(tmp_path)
    md = runbook_cli("report", "d-real", "--state-dir", "state", cwd=tmp_path).stdout
    assert "— drill drill-1" in md
    assert "## Drill drill-1: estimate vs measured" in md
    assert "| 12s | 0.4s | 1m00s | passed |" in md
    html = runbook_cli("report", "d-real", "--state-dir", "state", "--format", "html",
                       cwd=tmp_path).stdout
    assert 'id="drill"' in html and "10s–12s" in html


def test_history_lists_the_drill_run_with_its_estimate_and_not_the_rehearsal(tmp_path):
    drilled_run(tmp_path)
    lines = runbook_cli("history", "drilled.yaml", "--state-dir", "state", "--format", "json",
                        cwd=tmp_path).stdout.splitlines()
    (entry,) = [json.loads(line) for line in lines]
    assert (entry["run_id"], entry["kind"], entry["drill_id"]) == ("d-real", "drill", "drill-1")
    assert entry["estimate"] == 12.0 and entry["rto_met"] is True
