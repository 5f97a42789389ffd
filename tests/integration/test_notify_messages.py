"""Messages per phase and audience: rendered with the run's variables, checked by validate."""
from __future__ import annotations

import json
from pathlib import Path

from helpers.run import REPO, run_inprocess, runbook_cli, write_runbook

MESSAGES = """
messages:
  outage-initial:
    internal: "INCIDENT DETECTED: {{ incident_type }} affecting {{ systems }}"
    customers:
      subject: "Service disruption ({{ run.id }})"
      text: "Restored {{ restore.rows }} rows so far; {{ run.elapsed_text }} of RTO {{ run.rto_text }}"
      html: "<p>{{ incident_type }}</p>"
"""


def test_one_message_two_audiences_rendered_with_inputs_results_and_the_rto_clock(tmp_path, inbox):
    ran = run_inprocess(tmp_path, f"""
name: comms
rto: 1h
inputs:
  incident_type: {{type: string, default: Database outage}}
  systems: {{type: string, default: orders}}
{MESSAGES}
steps:
  - {{id: restore, set_fact: {{restore: {{rows: 4200}}}}}}
  - {{id: internal, target: incidents, notify.slack: {{message: outage-initial, audience: internal}}}}
  - {{id: customers, target: customers_mail,
      notify.email: {{message: outage-initial, audience: customers}}}}
""", inventories=[inbox.inventory])
    assert ran.status == "completed", ran.handle.outcome.message
    [slack] = inbox.received("slack")
    [mail] = inbox.received("email")
    assert slack["subject"] == "INCIDENT DETECTED: Database outage affecting orders"
    assert mail["subject"] == f"Service disruption ({ran.handle.run_id})"
    assert mail["text"].startswith("Restored 4200 rows so far; ")
    assert mail["text"].strip().endswith("s of RTO 1h00m")
    assert mail["html"] is True and mail["recipient"] == ["customers@company.com"]


def test_a_dry_run_renders_the_message_into_the_plan_and_sends_nothing(tmp_path, inbox):
    ran = run_inprocess(tmp_path, f"""
name: comms
inputs:
  incident_type: {{type: string, default: Database outage}}
  systems: {{type: string, default: orders}}
vars: {{restore: {{rows: 0}}}}
{MESSAGES}
steps:
  - {{id: internal, target: incidents, notify.slack: {{message: outage-initial, audience: internal}}}}
""", inventories=[inbox.inventory], dry_run=True)
    [planned] = ran.of("internal", "step.planned")
    assert planned.data["plan"] == ('slack #incidents via webhook: "INCIDENT DETECTED: Database '
                                    'outage affecting orders"')
    assert inbox.received() == []


def test_a_value_only_the_run_knows_is_named_in_the_plan(tmp_path, inbox):
    ran = run_inprocess(tmp_path, """
name: comms
messages:
  done: {internal: "{{ restore.stdout | length }} bytes restored"}
steps:
  - {id: restore, command: [echo, hi], register: restore}
  - {id: tell, target: incidents, notify.slack: {message: done}}
""", inventories=[inbox.inventory], dry_run=True)
    [planned] = ran.of("tell", "step.planned")
    assert planned.data["plan"] == ("notify.slack: message 'done' needs restore.stdout | length, "
                                    "known only at run time")
    assert inbox.received() == []


def test_messages_from_an_included_file_are_checked_there_and_fingerprinted(tmp_path):
    (tmp_path / "comms").mkdir()
    (tmp_path / "comms" / "messages.yaml").write_text(
        "messages:\n  initial:\n    internal: \"{{ incident_typo }} down\"\n")
    write_runbook(tmp_path, """
        name: comms
        inputs: {incident_type: {type: string, default: x}}
        include_messages: comms/messages.yaml
        steps:
          - notify.slack: {message: initial}
    """)
    result = runbook_cli("validate", "runbook.yaml", cwd=tmp_path)
    assert result.rc == 2
    assert (f"{tmp_path}/comms/messages.yaml:3:15: undefined variable 'incident_typo'"
            in result.stderr), result.stderr
    assert "did you mean 'incident_type'?" in result.stderr


def test_validate_names_every_missing_message_and_audience(tmp_path):
    write_runbook(tmp_path, """
        name: comms
        messages:
          initial: {internal: "down", customers: {subject: s, text: t}}
        notifications:
          - {events: [run.failed], target: incidents, message: final}
        steps:
          - notify.slack: {message: intial, audience: internal}
          - notify.email: {message: initial, audience: custmers}
          - notify.pagerduty: {message: initial}
          - block:
              - notify.webhook: {message: initial, audience: "{{ 'customers' }}"}
    """)
    result = runbook_cli("validate", "runbook.yaml", cwd=tmp_path)
    assert result.rc == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("runbook.yaml:")]
    assert [e.split(": ", 1)[1] for e in errors] == [
        "message 'final' is not defined (messages: initial) (did you mean 'initial'?)",
        "message 'intial' is not defined (messages: initial) (did you mean 'initial'?)",
        "message 'initial' has no audience 'custmers' (it has: internal, customers) "
        "(did you mean 'customers'?)",
        "message 'initial' has several audiences (internal, customers): say which with "
        "'audience:'",
    ]
    assert [e.split(": ", 1)[0] for e in errors] == ["runbook.yaml:5:56", "runbook.yaml:7:29",
                                                     "runbook.yaml:8:48", "runbook.yaml:9:23"]


def test_validating_a_directory_checks_message_files_through_their_runbook():
    result = runbook_cli("validate", "playbooks", cwd=REPO)
    assert result.rc == 0, result.output
    assert "messages.yaml" not in result.output


def test_resume_refuses_a_changed_messages_file(tmp_path, inbox):
    (tmp_path / "messages.yaml").write_text("messages:\n  m: {internal: \"one\"}\n")
    write_runbook(tmp_path, """
        name: comms
        include_messages: messages.yaml
        steps:
          - {id: ask, manual: {instructions: "go?"}}
          - {id: tell, target: incidents, notify.slack: {message: m}}
    """)
    first = runbook_cli("run", "runbook.yaml", "-i", inbox.inventory, "--run-id", "r1",
                        cwd=tmp_path)
    assert first.rc == 3, first.output
    (tmp_path / "messages.yaml").write_text("messages:\n  m: {internal: \"two\"}\n")
    again = runbook_cli("resume", "r1", cwd=tmp_path)
    assert again.rc == 2
    assert f"modified: {tmp_path / 'messages.yaml'}" in again.output
    started = json.loads((tmp_path / ".runbook/runs/r1/journal.jsonl").read_text().splitlines()[0])
    assert str(Path(tmp_path / "messages.yaml")) in started["data"]["includes"]
