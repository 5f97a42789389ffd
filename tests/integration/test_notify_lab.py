"""``runbook lab up --with inbox``: a background inbox, its inventory, ``runbook lab inbox``."""
from __future__ import annotations

import json

import pytest

from helpers.run import REPO, pid_alive, runbook_cli
from services.postgres import _require_postgres, lab_dir_for


@pytest.fixture(scope="module")
def inbox_lab():
    _require_postgres()
    from engine.lab.sandbox import lab_down, lab_up

    lab_dir = lab_dir_for("inbox-lab")
    state = lab_up(lab_dir, ["inbox"])
    yield state
    lab_down(lab_dir)


def test_the_drill_runs_against_the_lab_and_lab_inbox_lists_who_was_told_what(inbox_lab, tmp_path):
    lab_dir = inbox_lab["dir"]
    empty = runbook_cli("lab", "inbox", "--dir", lab_dir, cwd=tmp_path)
    assert empty.rc == 0 and "the inbox has received nothing yet" in empty.stdout
    drill = runbook_cli("run", REPO / "playbooks/communication-drill.yaml",
                        "-i", inbox_lab["inventory"], cwd=tmp_path)
    assert drill.rc == 0, drill.output

    listing = runbook_cli("lab", "inbox", "--dir", lab_dir, cwd=tmp_path)
    assert listing.rc == 0, listing.output
    lines = listing.stdout.splitlines()
    assert lines[-1] == "14 received"
    assert "slack      #incidents                       INCIDENT DETECTED: Database outage" \
        in lines[0]
    assert any(" email      customers@company.com            Resolved: orders and payments"
               in line for line in lines)
    records = json.loads(runbook_cli("lab", "inbox", "--dir", lab_dir, "--json",
                                     cwd=tmp_path).stdout)
    assert [r["channel"] for r in records].count("pagerduty") == 2
    credentials = (inbox_lab["dir"] + "/inbox/secrets")
    for secret_file in __import__("pathlib").Path(credentials).iterdir():
        assert secret_file.read_text().strip() not in listing.stdout + json.dumps(records)


def test_lab_status_shows_the_inbox_and_lab_down_stops_it(tmp_path):
    _require_postgres()
    from engine.lab.sandbox import lab_down, lab_up

    lab_dir = lab_dir_for("inbox-down")
    state = lab_up(lab_dir, ["inbox"])
    pid = state["parts"]["inbox"]["pid"]
    try:
        status = runbook_cli("lab", "status", "--dir", lab_dir, cwd=tmp_path)
        assert "inbox       running  pid " in status.stdout, status.output
        assert pid_alive(pid)
    finally:
        result = lab_down(lab_dir)
    assert "inbox" in result["stopped"]
    assert not pid_alive(pid)


def test_lab_inbox_without_an_inbox_is_one_clear_line(tmp_path):
    result = runbook_cli("lab", "inbox", "--dir", tmp_path / "nolab", cwd=tmp_path)
    assert result.rc == 1
    assert result.stderr.strip() == (f"error: no lab in {tmp_path / 'nolab'} (run `runbook lab up "
                                     f"--with inbox --dir {tmp_path / 'nolab'}`)")
