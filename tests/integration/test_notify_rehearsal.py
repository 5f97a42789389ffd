"""A rehearsal sends nothing and plans every delivery; no secret ever reaches an output."""
from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from urllib.parse import quote

import yaml

from helpers.run import REPO, runbook_cli

DRILL = REPO / "playbooks" / "communication-drill.yaml"


def _state(inbox) -> dict:
    """Everything the emulated services hold, plus what the inbox recorded."""
    services = inbox.server.services
    return copy.deepcopy({"components": services.components, "incidents": services.page_incidents,
                          "pages": services.incidents, "keys": services.idempotency_keys,
                          "records": inbox.received(lookups=False)})


def _steps(journal: Path, kind: str) -> set[str]:
    return {json.loads(line)["step"]["id"] for line in journal.read_text().splitlines()
            if json.loads(line)["type"] == kind}


def test_the_drill_rehearses_without_sending_and_plans_exactly_what_it_then_sends(tmp_path, inbox):
    before = _state(inbox)
    rehearsal = runbook_cli("run", DRILL, "-i", inbox.inventory, "--dry-run", "--strict",
                            "--run-id", "rehearsal", cwd=tmp_path)
    assert rehearsal.rc == 0, rehearsal.output
    assert _state(inbox) == before  # nothing sent, nothing changed
    lookups = inbox.received(lookups=True)
    assert {(r["channel"], r["method"]) for r in lookups} <= {("statuspage", "GET")}
    planned = _steps(tmp_path / ".runbook/runs/rehearsal/journal.jsonl", "step.planned")

    real = runbook_cli("run", DRILL, "-i", inbox.inventory, "--run-id", "real", cwd=tmp_path)
    assert real.rc == 0, real.output
    sent = _steps(tmp_path / ".runbook/runs/real/journal.jsonl", "step.succeeded")
    assert planned == sent and len(sent) == 14
    deliveries = inbox.received()
    assert len(deliveries) == 14
    assert {r["channel"] for r in deliveries} == {"slack", "pagerduty", "email", "statuspage"}
    customers = [r for r in deliveries if r.get("recipient") == ["customers@company.com"]]
    assert [r["subject"] for r in customers] == ["Service disruption: orders and payments",
                                                 "Resolved: orders and payments"]
    assert inbox.component("Database") == "operational"


def test_the_rehearsal_plan_shows_each_delivery_masked(tmp_path, inbox):
    rehearsal = runbook_cli("run", DRILL, "-i", inbox.inventory, "--dry-run", cwd=tmp_path)
    lines = [line for line in rehearsal.stdout.splitlines() if line.startswith("would change")]
    assert lines[0] == ('would change Declare the incident in Slack [incidents]: slack #incidents via '
                        'webhook: "INCIDENT DETECTED: Database outage affecting orders and pay…"')
    assert any('email to manager@company.com, cto@example.com: "Critical incident: Database '
               'outage" via smtp 127.0.0.1:' in line for line in lines)
    assert any("statuspage create incident \"Service disruption: orders and payments\" "
               "(investigating), components Database " in line for line in lines)


def _spellings(secret: str) -> set[str]:
    forms = {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}
    if "/services/" in secret:  # the token part of a webhook URL on its own
        forms.add(secret.rsplit("/", 1)[1])
    return {f for f in forms if len(f) >= 6}


def test_no_secret_reaches_the_journal_the_console_or_a_report(tmp_path, inbox):
    data = yaml.safe_load(inbox.inventory.read_text())
    literal = "literal-slack-token-0123456789"
    data["targets"]["broken_hook"] = {"slack": {"webhook": f"{inbox.url}/services/T0/B0/{literal}"}}
    data["targets"]["bad_mail"] = {"email": {**data["targets"]["incident_team_mail"]["email"],
                                             "password": "literal-mail-password-42"}}
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))
    failing = tmp_path / "failing.yaml"
    failing.write_text(yaml.safe_dump({"name": "failing", "steps": [
        {"id": "hook", "target": "broken_hook", "notify.slack": {"text": "x"},
         "ignore_errors": True},
        {"id": "mail", "target": "bad_mail", "notify.email": {"subject": "x", "text": "y"},
         "ignore_errors": True}]}))
    outputs = []
    for args in (["run", DRILL, "-i", inventory, "--run-id", "a"],
                 ["run", DRILL, "-i", inventory, "--run-id", "b", "--dry-run", "--output", "json"],
                 ["run", failing, "-i", inventory, "--run-id", "c"],
                 ["run", failing, "-i", inventory, "--run-id", "d", "--output", "json"],
                 ["report", "a", "--format", "json"], ["report", "c", "--format", "md"],
                 ["show", "c"]):
        result = runbook_cli(*args, cwd=tmp_path)
        assert result.rc in (0, 1), result.output
        outputs.append(result.stdout + result.stderr)
    journals = [p.read_text() for p in (tmp_path / ".runbook").rglob("journal.jsonl")]
    everything = "\n".join(outputs + journals)
    assert "AUTH failed for user 'runbook': 535" in everything  # the failures did happen
    assert "HTTP 404: no_service" in everything
    secrets = [*inbox.config["credentials"].values(), literal, "literal-mail-password-42"]
    for secret in secrets:
        for spelling in _spellings(secret):
            assert spelling not in everything, f"a secret leaked ({spelling[:4]}…)"
