"""``runbook drill``: the shipped playbooks drill green against a fresh lab, and a drill fails
when the rehearsal and the real run disagree or when the rehearsal changes the lab."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers.run import REPO, runbook_cli, write_runbook

from engine.errors import LabError
from engine.lab.sandbox import server_bin_dir

PLAYBOOKS = REPO / "playbooks"


@pytest.fixture(autouse=True)
def _postgres():
    try:
        server_bin_dir()
    except LabError as exc:
        if os.environ.get("CI"):  # .ci/run installs the server: missing is a failure there
            pytest.fail(f"no PostgreSQL server programs on this machine: {exc}")
        pytest.skip(f"no PostgreSQL server programs: {exc}")


def drill(tmp_path: Path, *paths) -> tuple:
    done = runbook_cli("drill", *map(str, paths), "--lab-dir", tmp_path / "lab",
                       "--state-dir", tmp_path / "state", "--output", "json", cwd=tmp_path,
                       timeout=900)
    return done, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_every_shipped_playbook_drills_green(tmp_path):
    done, results = drill(tmp_path, PLAYBOOKS)
    assert done.rc == 0, done.output
    shipped = {str(p) for p in PLAYBOOKS.rglob("*.yaml") if "steps:" in p.read_text()}
    assert {r["playbook"] for r in results} == shipped
    for result in results:
        assert result["ok"] and result["problems"] == [], result
        assert result["findings"] == [] and result["lab_changes"] == []
        assert result["executed"] == [p.lstrip("?") for p in result["planned"]
                                      if p.lstrip("?") in result["executed"]]
        assert result["status"] == "completed" and result["measured"] < result["rto"]
        record = tmp_path / "state" / "drills" / f"{result['drill_id']}.json"
        assert json.loads(record.read_text())["ok"] is True
    runs = runbook_cli("runs", "--state-dir", tmp_path / "state", cwd=tmp_path)
    assert all(f"[{r['drill_id']}]" in runs.stdout for r in results)


def test_a_change_the_rehearsal_did_not_plan_fails_the_drill(tmp_path):
    write_runbook(tmp_path, """
        name: Sneaky
        drill: {}
        steps:
          - name: Only when not rehearsing
            id: sneaky
            command: [touch, "{{ lab_dir }}/sneaked"]
            when: not run.dry_run
    """)
    done, [result] = drill(tmp_path, tmp_path / "runbook.yaml")
    assert done.rc == 1
    assert result["planned"] == [] and result["executed"] == ["sneaky"]
    assert "executed but not in the plan: sneaky" in result["problems"]
    assert "✗ executed but not in the plan" not in done.stdout  # json output: no text block


def test_a_rehearsal_that_changes_the_lab_fails_the_drill(tmp_path):
    write_runbook(tmp_path, """
        name: Liar
        drill: {}
        steps:
          - name: Says it is read-only, but writes a backup file
            command: [touch, "{{ backup_dir }}/written-by-a-rehearsal"]
            mutates: false
    """)
    done, [result] = drill(tmp_path, tmp_path / "runbook.yaml")
    assert done.rc == 1
    assert any(line.startswith("backups: ") for line in result["lab_changes"]), result
    assert any("the rehearsal changed the lab" in p for p in result["problems"])


def test_a_playbook_without_a_drill_declaration_fails(tmp_path):
    write_runbook(tmp_path, """
        name: Undrilled
        steps:
          - debug: {msg: hello}
    """)
    done, [result] = drill(tmp_path, tmp_path / "runbook.yaml")
    assert done.rc == 1
    assert result["problems"] == ["the playbook declares no drill: (lab parts, inputs, answers)"]
