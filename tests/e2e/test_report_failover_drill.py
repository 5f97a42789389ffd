"""A real failover drill (the shipped playbook against a fresh lab) reports green in JUnit:
its ``ignore_errors`` probe of the stopped primary is not a failure; the drill's report
compares the rehearsal's estimate with the measured time, and ``history`` lists it."""
from __future__ import annotations

import json
import os
from xml.etree import ElementTree as ET

import pytest
from helpers.run import REPO, runbook_cli

from engine.errors import LabError
from engine.lab.sandbox import server_bin_dir


@pytest.fixture(autouse=True)
def _postgres():
    try:
        server_bin_dir()
    except LabError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL server programs on this machine: {exc}")
        pytest.skip(f"no PostgreSQL server programs: {exc}")


def test_a_green_failover_drill_has_no_junit_failure(tmp_path):
    playbook = REPO / "playbooks" / "database-failover.yaml"
    done = runbook_cli("drill", playbook, "--lab-dir", tmp_path / "lab", "--state-dir",
                       tmp_path / "state", "--output", "json", cwd=tmp_path, timeout=900)
    assert done.rc == 0, done.output
    (result,) = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    state = ["--state-dir", tmp_path / "state"]
    report = json.loads(runbook_cli("report", result["run_id"], "--format", "json", *state,
                                    cwd=tmp_path).stdout)
    ignored = [s for s in report["steps"] if s["status"] == "failed (ignored)"]
    assert ignored, "the drill's primary probe should fail (the primary is stopped) and be ignored"
    suite = ET.fromstring(runbook_cli("report", result["run_id"], "--format", "junit", *state,
                                      cwd=tmp_path).stdout).find("testsuite")
    assert suite.get("failures") == "0"
    assert report["drill"]["drill_id"] == result["drill_id"]
    md = runbook_cli("report", result["run_id"], *state, cwd=tmp_path).stdout
    assert f"## Drill {result['drill_id']}: estimate vs measured" in md
    history = runbook_cli("history", playbook, "--format", "json", *state, cwd=tmp_path).stdout
    (entry,) = [json.loads(line) for line in history.splitlines()]
    assert entry["kind"] == "drill" and entry["estimate"] == result["estimate"]
