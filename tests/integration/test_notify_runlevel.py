"""Run-level ``notifications:``: channels told about run events; never able to fail a run."""
from __future__ import annotations

import json

from helpers.run import journal_lines, run_inprocess, runbook_cli, write_runbook

OUTCOME = """
name: failover
rto: 30m
messages:
  outcome:
    internal: "{{ run.runbook }} {{ run.status }} after {{ run.elapsed_text }} of RTO {{ run.rto_text }}{{ ' at ' ~ run.failed_step if run.failed_step else '' }}"
notifications:
  - {events: [run.failed, run.completed], target: incidents, message: outcome}
  - {events: [run.failed], target: oncall, args: {severity: error}}
steps:
  - {id: work, command: [/bin/sh, -c, "exit ${FAIL:-0}"], mutates: false}
"""


def test_a_completed_run_tells_the_channel_and_stays_completed(tmp_path, inbox):
    write_runbook(tmp_path, OUTCOME)
    result = runbook_cli("run", "runbook.yaml", "-i", inbox.inventory, "--run-id", "ok1",
                         cwd=tmp_path)
    assert result.rc == 0, result.output
    [slack] = inbox.received()
    assert slack["recipient"] == "#incidents"
    assert slack["subject"].startswith("failover completed after ")
    assert "notified     incidents (slack) on run.completed: posted to #incidents via webhook" \
        in result.stdout
    events = journal_lines(tmp_path / ".runbook")
    assert [e["type"] for e in events[-2:]] == ["run.completed", "notification.sent"]
    assert events[-1]["data"]["event_seq"] == events[-2]["seq"]
    runs = runbook_cli("runs", "--output", "json", cwd=tmp_path)
    assert json.loads(runs.stdout.splitlines()[0])["status"] == "completed"
    verify = runbook_cli("audit", "verify", "ok1", cwd=tmp_path)
    assert verify.rc == 0, verify.output


def test_a_failed_run_tells_the_channel_and_pages_with_its_failed_step(tmp_path, inbox):
    write_runbook(tmp_path, OUTCOME)
    result = runbook_cli("run", "runbook.yaml", "-i", inbox.inventory, env={"FAIL": "3"},
                         cwd=tmp_path)
    assert result.rc == 1
    slack, page = inbox.received()
    assert slack["subject"].startswith("failover failed after ") and slack["subject"].endswith(
        " at work")
    assert page["channel"] == "pagerduty" and page["severity"] == "error"
    assert page["subject"].startswith("runbook 'failover' run ") and page["subject"].endswith(
        " FAILED")
    assert page["dedup_key"].endswith("-notification-1-run.failed")


def test_a_channel_that_is_down_never_fails_the_run(tmp_path, inbox):
    from engine.lab.inbox import free_ports

    [port] = free_ports(1)
    inventory = tmp_path / "down.yaml"
    inventory.write_text(f"targets:\n  incidents: {{slack: {{webhook: 'http://127.0.0.1:{port}/x'}}}}\n")
    write_runbook(tmp_path, OUTCOME)
    result = runbook_cli("run", "runbook.yaml", "-i", inventory, cwd=tmp_path)
    assert result.rc == 0, result.output
    assert ("notify failed incidents (slack) on run.completed: slack webhook of target "
            "'incidents': cannot connect: connection refused") in result.stdout
    events = journal_lines(tmp_path / ".runbook")
    assert events[-1]["type"] == "notification.failed"
    runs = runbook_cli("runs", "--output", "json", cwd=tmp_path).stdout.splitlines()
    assert json.loads(runs[0])["status"] == "completed"


def test_approvers_are_paged_when_an_approval_is_requested(tmp_path, inbox):
    ran = run_inprocess(tmp_path, """
name: failover
notifications:
  - {events: [approval.requested], target: oncall, args: {severity: warning}}
  - {events: [run.paused], target: incidents}
steps:
  - {id: sign-off, approve: {approvers: [carol], message: "Promote the replica?"}}
""", inventories=[inbox.inventory])
    assert ran.status == "paused"
    page, slack = inbox.received()
    assert page["severity"] == "warning" and page["subject"].endswith("waits for an approval")
    assert page["dedup_key"].endswith("-notification-0-approval.requested-sign-off")
    assert slack["subject"].startswith("runbook 'failover' run ")
    types = ran.types
    assert types.index("notification.sent") == types.index("approval.requested") + 1


def test_a_message_that_cannot_be_rendered_falls_back_to_a_summary(tmp_path, inbox):
    ran = run_inprocess(tmp_path, """
name: failover
messages:
  done: {internal: "restored {{ restore.rows }} rows"}
notifications:
  - {events: [run.failed], target: incidents, message: done}
steps:
  - {id: fail, fail: {message: boom}}
  - {id: restore, set_fact: {restore: {rows: 1}}}
""", inventories=[inbox.inventory])
    assert ran.status == "failed"
    [slack] = inbox.received()
    assert "(the message could not be rendered: message 'done'" in slack["subject"]
    [sent] = [e for e in ran.events if e.type == "notification.sent"]
    assert sent.data["fallback"]


def test_a_dry_run_lists_every_notification_it_would_send_and_sends_none(tmp_path, inbox):
    write_runbook(tmp_path, OUTCOME)
    result = runbook_cli("run", "runbook.yaml", "-i", inbox.inventory, "--dry-run", cwd=tmp_path)
    assert result.rc == 0, result.output
    assert inbox.received(lookups=True) == []
    lines = [line for line in result.stdout.splitlines() if line.startswith("would notify")]
    assert len(lines) == 3
    assert lines[0].startswith('would notify incidents (slack) on run.failed: slack #incidents '
                               'via webhook: "failover failed after ')
    assert lines[2].startswith("would notify oncall (pagerduty) on run.failed: pagerduty trigger "
                               "error: ")
    planned = [e for e in journal_lines(tmp_path / ".runbook")
               if e["type"] == "notification.planned"]
    assert {(p["data"]["target"], p["data"]["event"]) for p in planned} == {
        ("incidents", "run.failed"), ("incidents", "run.completed"), ("oncall", "run.failed")}


def test_step_mode_previews_each_notify_step_with_its_own_target(tmp_path, inbox):
    import sys

    import pexpect

    from helpers.run import cli_env

    write_runbook(tmp_path, """
        name: guided comms
        steps:
          - {name: Page, target: oncall, notify.pagerduty: {summary: "DB down"}}
          - {name: Mail, target: incident_team_mail, notify.email: {subject: "DB down", text: x}}
    """)
    child = pexpect.spawn(sys.executable, ["-m", "engine", "run", "runbook.yaml", "--step",
                                           "-i", str(inbox.inventory)], cwd=str(tmp_path),
                          env=cli_env({"TERM": "dumb"}), encoding="utf-8", timeout=20,
                          dimensions=(50, 200))
    child.expect_exact('plan:     pagerduty trigger critical: "DB down" dedup_key=runbook-')
    child.expect_exact("Run this step?")
    child.sendline("y")
    child.expect_exact('plan:     email to incident-team@company.com: "DB down" via smtp')
    child.expect_exact("Run this step?")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert [r["channel"] for r in inbox.received()] == ["pagerduty", "email"]


def test_shared_runs_in_postgresql_keep_their_status_after_a_notification(tmp_path, inbox, pg_lab):
    import secrets
    from urllib.parse import quote

    import psycopg

    name = f"runbook_notify_{secrets.token_hex(4)}"
    admin = pg_lab["primary"]["admin_dsn"]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER erp')
    password = open(pg_lab["passfile"]).read().splitlines()[0].split(":", 4)[4]
    url = f"postgresql://erp:{quote(password, safe='')}@127.0.0.1:{pg_lab['primary']['port']}/{name}"
    try:
        write_runbook(tmp_path, OUTCOME)
        env = {"RUNBOOK_STATE_URL": url}
        result = runbook_cli("run", "runbook.yaml", "-i", inbox.inventory, "--run-id", "pg1",
                             env=env, cwd=tmp_path)
        assert result.rc == 0, result.output
        exported = runbook_cli("audit", "export", "pg1", env=env, cwd=tmp_path).stdout
        assert [json.loads(line)["type"] for line in exported.splitlines()][-2:] == [
            "run.completed", "notification.sent"]
        runs = runbook_cli("runs", "--output", "json", env=env, cwd=tmp_path).stdout
        assert json.loads(runs.splitlines()[0])["status"] == "completed"
        assert "completed" in runbook_cli("show", "pg1", env=env, cwd=tmp_path).stdout
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
