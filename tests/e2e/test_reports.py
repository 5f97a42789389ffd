"""``runbook report`` in every format, ``runbook history``, on real runs made through the CLI.

Markdown, JUnit and JSON are compared with golden files (times, durations and hashes
normalised). Set ``RUNBOOK_UPDATE_GOLDEN=1`` to rewrite them after a deliberate change.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from helpers import reports as rp

GOLDEN = Path(__file__).parent / "golden"


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("RUNBOOK_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"no golden {path}: run with RUNBOOK_UPDATE_GOLDEN=1 once"
    assert text == path.read_text(), f"{name} differs from its golden file"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reports")
    ids = {"completed": rp.completed_run(tmp), "failed": rp.failed_run(tmp),
           "crashed": rp.crashed_and_resumed_run(tmp), "dry": rp.dry_run(tmp)}
    return tmp, ids


def _json(tmp, run_id) -> dict:
    return json.loads(rp.report(tmp, run_id, "json"))


def _stable(report: dict) -> dict:
    """The JSON report without what changes from one run to the next."""
    doc = json.loads(json.dumps(report))
    timeline = doc.pop("timeline")
    doc["timeline_rows"] = [(r["key"], [s["kind"] for s in r["segments"]], len(r["retries"]))
                            for r in timeline["rows"]]
    doc["timeline_bands"] = [b["kind"] for b in timeline["bands"]]
    for person in doc["operators"]:
        person.pop("host")  # the machine's name
    return _blank_numbers(doc)


def _blank_numbers(value):
    if isinstance(value, dict):
        return {k: _blank_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_blank_numbers(v) for v in value]
    if isinstance(value, float):
        return "<N>"
    return value


@pytest.mark.parametrize("which", ["completed", "failed", "crashed", "dry"])
def test_markdown_report_matches_its_golden_file(runs, which):
    tmp, ids = runs
    golden(f"{which}.md", rp.normalise(rp.report(tmp, ids[which], "md"), tmp))


@pytest.mark.parametrize("which", ["completed", "failed", "dry"])
def test_junit_report_matches_its_golden_file(runs, which):
    tmp, ids = runs
    golden(f"{which}.junit.xml", rp.normalise(rp.report(tmp, ids[which], "junit"), tmp))


@pytest.mark.parametrize("which", ["completed", "failed"])
def test_json_report_matches_its_golden_file(runs, which):
    tmp, ids = runs
    text = json.dumps(_stable(_json(tmp, ids[which])), indent=2, sort_keys=True) + "\n"
    golden(f"{which}.json", rp.normalise(text, tmp))


def test_postmortem_draft_matches_its_golden_file(runs):
    tmp, ids = runs
    golden("completed.postmortem.md", rp.normalise(rp.report(tmp, ids["completed"],
                                                             "postmortem"), tmp))


def test_an_ignored_failure_is_not_a_junit_failure(runs):
    tmp, ids = runs
    suite = ET.fromstring(rp.report(tmp, ids["completed"], "junit")).find("testsuite")
    assert suite.get("failures") == "0" and suite.get("tests") == "6"
    cleanup = [c for c in suite.findall("testcase") if c.get("name") == "Optional cleanup"][0]
    assert cleanup.find("failure") is None
    assert "ignore_errors" in cleanup.find("system-out").text


def test_a_real_failure_is_a_junit_failure(runs):
    tmp, ids = runs
    suite = ET.fromstring(rp.report(tmp, ids["failed"], "junit")).find("testsuite")
    assert suite.get("failures") == "1"
    assert "promotion refused" in suite.findall("testcase")[1].find("failure").get("message")


def test_json_report_has_every_fact_of_the_completed_run(runs):
    tmp, ids = runs
    report = _json(tmp, ids["completed"])
    assert report["status"] == "completed" and not report["dry_run"]
    assert [(p["name"], p["roles"]) for p in report["operators"]] == [
        ("alice", ["started"]), ("carol", ["approved"]), ("bob", ["resumed", "confirmed", "noted"])]
    o = report["objectives"]
    assert o["rto"] == 60 and o["rto_met"] is True and o["rpo"] == 900 and o["data_loss"] is None
    health = [s for s in report["steps"] if s["id"] == "health"][0]
    assert health["attempts"] == 2 and health["retries"][0]["message"] == "exited with rc=1"
    announce = [s for s in report["steps"] if s["id"] == "announce"][0]
    assert announce["evidence"] == "INC-4242"
    assert [c["item"] for c in announce["checklist"]] == ["Status page updated", "Slack posted"]
    assert announce["notes"][0]["text"] == "posted at 03:12"
    assert [(a["kind"], a["operator"], a["comment"]) for a in report["approvals"]] == [
        ("requested", "alice", ""), ("granted", "carol", "backup verified")]
    assert [b["kind"] for b in report["timeline"]["bands"]] == ["paused"]
    assert report["journal"]["verified"] is True and len(report["journal"]["head"]) == 64


def test_failed_run_report_shows_the_rollback_and_no_recovery(runs):
    tmp, ids = runs
    report = _json(tmp, ids["failed"])
    assert report["objectives"]["rto_met"] is None  # a failed run recovered nothing
    (rollback,) = report["rollback"]
    assert rollback["of"] == ["down"] and "promotion refused" in rollback["reason"]
    assert [s["status"] for s in rollback["steps"]] == ["changed"]
    kinds = {r["key"]: [s["kind"] for s in r["segments"]] for r in report["timeline"]["rows"]}
    assert kinds["down-rollback-command"] == ["rollback"] and kinds["promote"] == ["failed"]


def test_crashed_run_report_shows_the_interruption_and_the_rerun(runs):
    tmp, ids = runs
    report = _json(tmp, ids["crashed"])
    assert report["status"] == "completed"
    assert [b["kind"] for b in report["timeline"]["bands"]] == ["interrupted"]
    slow = [s for s in report["steps"] if s["id"] == "slow"][0]
    assert slow["runs"] == 2 and slow["status"] == "changed"
    assert report["resumes"][0]["operator"] == "bob"
    assert report["resumes"][0]["in_doubt"]


def test_dry_run_report_is_marked_and_carries_the_estimate(runs):
    tmp, ids = runs
    report = _json(tmp, ids["dry"])
    assert report["dry_run"] is True and report["timeline"]["estimated"] is True
    assert report["estimate"]["estimate"] > 0
    md = rp.report(tmp, ids["dry"], "md")
    assert "(dry-run: a rehearsal, nothing was changed)" in md
    assert "Estimated time to recovery" in md


def test_report_writes_a_file_with_out(runs):
    tmp, ids = runs
    done = rp.cli(tmp, "report", ids["completed"], "--format", "html", "-o", "r.html")
    assert done.rc == 0 and (tmp / "r.html").read_text().startswith("<!doctype html>")


def test_history_lists_real_runs_with_rto_verdicts(runs):
    tmp, ids = runs
    text = rp.cli(tmp, "history", "recovery.yaml").stdout
    assert "History of 'Database recovery': 1 run(s)" in text
    assert ids["completed"] in text and "met" in text and ids["dry"] not in text
    lines = rp.cli(tmp, "history", "Failover", "--format", "json").stdout.splitlines()
    (entry,) = [json.loads(line) for line in lines]
    assert entry["status"] == "failed" and entry["rto_met"] is None and entry["rto"] == 30


def test_history_html_draws_a_bar_per_run_and_the_rto(runs):
    tmp, ids = runs
    page = rp.cli(tmp, "history", "Crashy", "--format", "html").stdout
    assert page.count('class="trend-bar') == 1 and 'class="rto"' in page
