"""A notify step in doubt after kill -9: PagerDuty is re-sent safely, the others ask."""
from __future__ import annotations

import json
import os
import signal
import time

import yaml

from helpers.run import runbook_cli, start_cli, wait_gone, write_runbook


def _slow_inventory(inbox, tmp_path):
    """The inbox's inventory plus targets whose answers take 2 s (the request is recorded first)."""
    data = yaml.safe_load(inbox.inventory.read_text())
    pagerduty = data["targets"]["oncall"]["pagerduty"]
    data["targets"]["slow_oncall"] = {"pagerduty": {**pagerduty, "events_url":
                                                    pagerduty["events_url"] + "?delay=2"}}
    data["targets"]["slow_hook"] = {"webhook": {"url": inbox.url + "/hooks/slow?delay=2"}}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _kill_once_received(process, inbox, channel: str) -> None:
    deadline = time.monotonic() + 30
    while not inbox.received(channel):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the request never arrived"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    assert wait_gone(process.pid)
    process.communicate()


def _journal(tmp_path, run_id: str) -> list[dict]:
    path = tmp_path / ".runbook" / "runs" / run_id / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_kill_during_a_page_then_resume_never_opens_a_second_incident(tmp_path, inbox):
    inventory = _slow_inventory(inbox, tmp_path)
    write_runbook(tmp_path, """
        name: page on-call
        steps:
          - {id: page, target: slow_oncall, register: page,
             notify.pagerduty: {summary: "Primary database down", severity: critical}}
          - {id: after, debug: {msg: "paged {{ page.dedup_key }}"}}
    """)
    process = start_cli("run", "runbook.yaml", "-i", inventory, "--run-id", "k9", cwd=tmp_path)
    _kill_once_received(process, inbox, "pagerduty")
    assert _journal(tmp_path, "k9")[-1]["type"] == "step.started"  # in doubt

    resumed = runbook_cli("resume", "k9", cwd=tmp_path)  # no --in-doubt: nobody has to decide
    assert resumed.rc == 0, resumed.output
    triggers = inbox.received("pagerduty")
    assert len(triggers) == 2  # re-sent ...
    assert {t["dedup_key"] for t in triggers} == {"runbook-k9-page@slow_oncall"}
    assert [t["incident_opened"] for t in triggers] == [True, False]  # ... into the same incident
    events = _journal(tmp_path, "k9")
    [resume] = [e for e in events if e["type"] == "run.resumed"]
    assert resume["data"]["in_doubt"] == [{"step": "page@slow_oncall", "decision": "rerun",
                                           "why": "idempotent (notify.pagerduty)"}]
    assert events[-1]["type"] == "run.completed"


def test_kill_during_a_webhook_then_resume_asks_the_operator(tmp_path, inbox):
    inventory = _slow_inventory(inbox, tmp_path)
    write_runbook(tmp_path, """
        name: tell the webhook
        steps:
          - {id: hook, target: slow_hook, notify.webhook: {json: {event: FAILOVER_INITIATED}}}
    """)
    process = start_cli("run", "runbook.yaml", "-i", inventory, "--run-id", "k9w", cwd=tmp_path)
    _kill_once_received(process, inbox, "webhook")
    resumed = runbook_cli("resume", "k9w", cwd=tmp_path)
    assert resumed.rc == 3
    assert "step 'hook' (hook@slow_hook) started but never finished" in resumed.output
    time.sleep(0.2)
    assert len(inbox.received("webhook")) == 1  # not re-sent blindly
    skipped = runbook_cli("resume", "k9w", "--in-doubt", "skip", cwd=tmp_path)
    assert skipped.rc == 0, skipped.output
    assert len(inbox.received("webhook")) == 1
