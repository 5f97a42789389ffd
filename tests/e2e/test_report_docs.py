"""``runbook report`` (md, html, json, junit) and ``runbook docs``, on real runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from xml.etree import ElementTree as ET

ENGINE = [sys.executable, "-m", "engine"]

RUNBOOK = """\
name: Reported
rto: 5m
steps:
  - name: Uses the secret
    command: [echo, "token={{ secrets.token }}"]
  - name: Checked
    command: [echo, ok]
    register: out
    verify:
      - that: out.stdout == 'ok'
  - name: Breaks
    command: [sh, -c, 'echo boom >&2; exit 3']
"""


def cli(tmp_path, *args):
    env = {**os.environ, "REPORT_TOKEN": "tok-very-secret-123"}
    return subprocess.run(ENGINE + list(args), cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=env)


def failed_run(tmp_path):
    (tmp_path / "rb.yaml").write_text(RUNBOOK)
    (tmp_path / "inv.yaml").write_text("secrets:\n  token: {env: REPORT_TOKEN}\n")
    assert cli(tmp_path, "run", "rb.yaml", "-i", "inv.yaml", "--state-dir", "s",
               "--run-id", "rep", "--operator", "ivy").returncode == 1


def test_markdown_report_lists_steps_statuses_and_checks(tmp_path):
    failed_run(tmp_path)
    md = cli(tmp_path, "report", "rep", "--state-dir", "s").stdout
    assert md.startswith("# Run rep: Reported")
    assert "- **Status:** failed" in md and "by ivy" in md
    # the timeline row: start | end | step | status | attempts | ...
    assert "| Breaks | failed | 1 |" in md and "exited with rc=3: boom" in md
    assert "verify `out.stdout == 'ok'`: passed" in md
    assert "tok-very-secret-123" not in md


def test_json_report_is_machine_readable(tmp_path):
    failed_run(tmp_path)
    report = json.loads(cli(tmp_path, "report", "rep", "--state-dir", "s", "--format", "json").stdout)
    assert report["run"]["status"] == "failed"
    assert [s["status"] for s in report["steps"]] == ["changed", "changed", "failed"]
    assert [o["name"] for o in report["operators"]] == ["ivy"]
    assert report["operators"][0]["identity"] == "unverified"  # no signed approvals yet


def test_junit_report_counts_failures_for_ci(tmp_path):
    failed_run(tmp_path)
    xml = cli(tmp_path, "report", "rep", "--state-dir", "s", "--format", "junit").stdout
    suite = ET.fromstring(xml).find("testsuite")
    assert suite.get("tests") == "3" and suite.get("failures") == "1"
    failure = suite.findall("testcase")[2].find("failure")
    assert "rc=3" in failure.get("message")


def test_html_report_escapes_and_masks(tmp_path):
    failed_run(tmp_path)
    page = cli(tmp_path, "report", "rep", "--state-dir", "s", "--format", "html").stdout
    assert page.startswith("<!doctype html>") and 'id="verification"' in page
    assert "Breaks" in page and "exited with rc=3: boom" in page
    assert "tok-very-secret-123" not in page
    assert "&gt;&amp;2" not in page or "boom" in page


def test_report_of_an_unknown_run_exits_2(tmp_path):
    result = cli(tmp_path, "report", "nope", "--state-dir", "s")
    assert result.returncode == 2 and "no run 'nope'" in result.stderr


def test_docs_prints_a_markdown_checklist(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Binder
rto: 1h
inputs:
  backup_file: {type: string, required: true, description: Dump to restore}
steps:
  - name: Tell people
    manual:
      instructions: Update the status page.
      checklist: [Status page updated, Leadership briefed]
  - name: Restore
    command: [pg_restore, "{{ backup_file }}"]
    expected_duration: 10m
    verify: ["true"]
""")
    result = cli(tmp_path, "docs", "rb.yaml")
    assert result.returncode == 0
    text = result.stdout
    assert "# Binder" in text and "**RTO:** 1h00m" in text
    assert "| `backup_file` | string | yes |" in text
    assert "- [ ] **1. Tell people**" in text and "  - [ ] Leadership briefed" in text
    assert "- [ ] **2. Restore** — `command`, ~10m00s" in text
