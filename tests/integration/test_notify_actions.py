"""The notify verbs against the real inbox: what arrives, and how failures read.

Every test runs a runbook in-process against the inbox's own inventory (targets
``incidents``, ``oncall``, ``incident_team_mail`` ...) and looks at what the
receiver recorded — the same JSON lines ``runbook lab inbox`` lists.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import yaml

from helpers.run import journal_lines, run_inprocess


def runbook(*steps: dict, **top) -> str:
    return yaml.safe_dump({"name": "notify test", **top, "steps": list(steps)}, sort_keys=False)


def inventory(inbox, tmp_path: Path, **targets) -> Path:
    """The inbox's inventory with some targets added or replaced."""
    data = yaml.safe_load(inbox.inventory.read_text())
    data["targets"].update(targets)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(tmp_path, inbox, *steps, inv=None, **options):
    return run_inprocess(tmp_path, runbook(*steps), inventories=[inv or inbox.inventory],
                         **options)


# --- what arrives ---

def test_slack_webhook_and_api_threads(tmp_path, inbox):
    ran = run(tmp_path, inbox,
              {"id": "hook", "target": "incidents", "notify.slack": {"text": "INCIDENT DETECTED"}},
              {"id": "first", "target": "incidents_api", "register": "first",
               "notify.slack": {"text": "Recovery procedures initiated"}},
              {"id": "reply", "target": "incidents_api", "register": "reply",
               "notify.slack": {"text": "ETA 45m", "thread": "{{ first }}"}})
    assert ran.status == "completed", ran.handle.outcome.message
    hook, first, reply = inbox.received("slack")
    assert (hook["via"], hook["recipient"], hook["subject"]) == ("webhook", "#incidents",
                                                                "INCIDENT DETECTED")
    assert first["via"] == "api" and first["thread_ts"] is None
    assert reply["thread_ts"] == first["ts"] == ran.value("first")["ts"]
    assert ran.value("reply")["thread_ts"] == first["ts"]


def test_pagerduty_trigger_then_resolve_with_the_registered_dedup_key(tmp_path, inbox):
    ran = run(tmp_path, inbox,
              {"id": "page", "target": "oncall", "register": "page",
               "notify.pagerduty": {"summary": "Primary database down", "severity": "critical",
                                    "source": "db1", "custom_details": {"rpo": "15m"}}},
              {"id": "resolve", "target": "oncall",
               "notify.pagerduty": {"action": "resolve", "dedup_key": "{{ page.dedup_key }}"}})
    assert ran.status == "completed", ran.handle.outcome.message
    trigger, resolve = inbox.received("pagerduty")
    key = ran.value("page")["dedup_key"]
    assert key == f"runbook-{ran.handle.run_id}-page@oncall"
    assert trigger["dedup_key"] == resolve["dedup_key"] == key
    assert trigger["incident_opened"] is True and trigger["answered"] == 202
    payload = trigger["body"]["payload"]
    assert payload == {"summary": "Primary database down", "severity": "critical",
                       "source": "db1", "custom_details": {"rpo": "15m"}}
    assert trigger["body"]["routing_key"] == "***"  # the inbox's own record hides it too


def test_email_is_multipart_over_tls_with_auth_and_a_stable_message_id(tmp_path, inbox):
    ran = run(tmp_path, inbox, {
        "id": "mail", "target": "incident_team_mail", "register": "mail",
        "notify.email": {"subject": "DR drill", "text": "plain body", "html": "<p>html</p>",
                         "cc": "manager@company.com", "bcc": ["ceo@example.com"]}})
    assert ran.status == "completed", ran.handle.outcome.message
    [mail] = inbox.received("email")
    assert mail["recipient"] == ["incident-team@company.com", "manager@company.com",
                                 "ceo@example.com"]
    assert (mail["subject"], mail["text"].strip(), mail["html"]) == ("DR drill", "plain body", True)
    assert mail["tls"] is True and mail["auth_user"] == "runbook" and mail["server"] == "starttls"
    assert mail["sender"] == "dr-runbook@company.com"
    assert mail["message_id"] == ran.value("mail")["message_id"]
    assert f"runbook-{ran.handle.run_id}-mail" in mail["message_id"]


def test_statuspage_incident_lifecycle_and_components(tmp_path, inbox):
    ran = run(tmp_path, inbox,
              {"id": "open", "target": "status_page", "register": "incident",
               "notify.statuspage": {"name": "Service Disruption", "status": "investigating",
                                     "body": "We are investigating", "components": {
                                         "API": "major_outage"}}},
              {"id": "identified", "target": "status_page",
               "notify.statuspage": {"incident": "{{ incident }}", "status": "identified",
                                     "body": "Cause found"}},
              {"id": "resolve", "target": "status_page", "register": "resolved",
               "notify.statuspage": {"incident": "{{ incident.incident_id }}", "action": "resolve",
                                     "body": "Fixed", "components": {"API": "operational"}}})
    assert ran.status == "completed", ran.handle.outcome.message
    records = inbox.received("statuspage")
    assert [r["subject"] for r in records] == ["Service Disruption (investigating)",
                                               "Service Disruption (identified)",
                                               "Service Disruption (resolved)"]
    assert inbox.component("API") == "operational"
    assert ran.value("open")["previous"]["components"] == {"API": "operational"}
    assert ran.value("resolve")["previous"] == {"status": "identified",
                                                 "components": {"API": "major_outage"}}
    # the plan of a later update reads the incident (a look-up, not a delivery)
    assert any(r["method"] == "GET" for r in inbox.received("statuspage", lookups=True))


def test_webhook_is_signed_and_carries_a_stable_idempotency_key(tmp_path, inbox):
    ran = run(tmp_path, inbox, {"id": "hook", "target": "webhook",
                                "notify.webhook": {"json": {"event": "FAILOVER_SUCCESS"}}})
    assert ran.status == "completed", ran.handle.outcome.message
    [hook] = inbox.received("webhook")
    assert hook["signed"] is True and hook["body"] == {"event": "FAILOVER_SUCCESS"}
    assert hook["idempotency_key"] == f"runbook-{ran.handle.run_id}-hook@webhook"
    secret = inbox.config["credentials"]["webhook_secret"].encode()
    expected = hmac.new(secret, json.dumps({"event": "FAILOVER_SUCCESS"}).encode(),
                        hashlib.sha256).hexdigest()
    assert hook["headers"]["x-runbook-signature"] == f"sha256={expected}"


# --- failures: one clear line, no secret ---

def test_smtp_auth_failure_names_the_user_and_never_the_password(tmp_path, inbox):
    good = yaml.safe_load(inbox.inventory.read_text())["targets"]["incident_team_mail"]["email"]
    inv = inventory(inbox, tmp_path, bad_mail={"email": {**good, "password": "wrong-password-42"}})
    ran = run(tmp_path, inbox, {"id": "mail", "target": "bad_mail",
                                "notify.email": {"subject": "x", "text": "y"}}, inv=inv)
    assert ran.status == "failed"
    message = ran.end("mail").data["message"]
    assert message.startswith(f"smtp 127.0.0.1:{good['port']}: AUTH failed for user 'runbook': 535")
    assert "wrong-password-42" not in json.dumps(journal_lines(tmp_path / "state"))
    assert inbox.received("email") == []


def test_starttls_against_a_server_without_it_is_refused_not_downgraded(tmp_path, inbox):
    plain = yaml.safe_load(inbox.inventory.read_text())["targets"]["mail_plain"]["email"]
    inv = inventory(inbox, tmp_path, sneaky={"email": {**plain, "tls": "starttls"}})
    ran = run(tmp_path, inbox, {"id": "mail", "target": "sneaky",
                                "notify.email": {"subject": "x", "text": "y"}}, inv=inv)
    assert ran.status == "failed"
    assert "does not offer STARTTLS; refusing to send in clear text" in ran.end("mail").data["message"]
    assert inbox.received("email") == []


def test_a_password_over_plain_smtp_is_refused(tmp_path, inbox):
    plain = yaml.safe_load(inbox.inventory.read_text())["targets"]["mail_plain"]["email"]
    inv = inventory(inbox, tmp_path, plain_auth={"email": {**plain, "user": "u", "password": "pw12"}})
    ran = run(tmp_path, inbox, {"id": "mail", "target": "plain_auth",
                                "notify.email": {"subject": "x", "text": "y"}}, inv=inv)
    assert "refusing to send the password of user 'u' over an unencrypted connection" in \
        ran.end("mail").data["message"]
    assert inbox.received("email") == []


def test_an_untrusted_certificate_fails_verification(tmp_path, inbox):
    good = yaml.safe_load(inbox.inventory.read_text())["targets"]["incident_team_mail"]["email"]
    untrusting = {k: v for k, v in good.items() if k != "ca_file"}
    inv = inventory(inbox, tmp_path, no_ca={"email": untrusting})
    ran = run(tmp_path, inbox, {"id": "mail", "target": "no_ca",
                                "notify.email": {"subject": "x", "text": "y"}}, inv=inv)
    assert "TLS certificate verification failed" in ran.end("mail").data["message"]


def test_unknown_slack_webhook_is_a_404_without_the_url(tmp_path, inbox):
    url = inbox.url + "/services/T0LAB/B0NOPE/s3cr3t-path-token"
    inv = inventory(inbox, tmp_path, gone={"slack": {"webhook": url}})
    ran = run(tmp_path, inbox, {"id": "post", "target": "gone", "notify.slack": {"text": "hi"}},
              inv=inv)
    message = ran.end("post").data["message"]
    assert message == "slack webhook of target 'gone': HTTP 404: no_service"
    assert "s3cr3t-path-token" not in json.dumps(journal_lines(tmp_path / "state"))


def test_5xx_answers_are_retried_with_backoff(tmp_path, inbox):
    url = inbox.url + f"/v2/enqueue?fail_first=2&test={time.time()}"
    key = yaml.safe_load(inbox.inventory.read_text())["targets"]["oncall"]["pagerduty"]
    inv = inventory(inbox, tmp_path, flaky={"pagerduty": {**key, "events_url": url}})
    started = time.monotonic()
    ran = run(tmp_path, inbox, {"id": "page", "target": "flaky", "register": "page",
                                "notify.pagerduty": {"summary": "x"}}, inv=inv)
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.value("page")["tries"] == 3
    assert [r["answered"] for r in inbox.received("pagerduty")] == [503, 503, 202]
    assert time.monotonic() - started >= 1.5  # 0.5 s, then 1 s


def test_a_lasting_5xx_fails_after_the_retries(tmp_path, inbox):
    hook = f"{inbox.url}/hooks/plain?status=503&test={time.time()}"
    ran = run(tmp_path, inbox, {"id": "hook", "notify.webhook": {"url": hook, "json": {}}})
    assert ran.end("hook").data["message"] == \
        f"webhook POST {inbox.url}/…: HTTP 503: fault injected: HTTP 503"
    assert len(inbox.received("webhook")) == 3


def test_a_receiver_that_is_down(tmp_path, inbox):
    from engine.lab.inbox import free_ports

    [port] = free_ports(1)
    inv = inventory(inbox, tmp_path, down={"slack": {"webhook": f"http://127.0.0.1:{port}/x"}})
    ran = run(tmp_path, inbox, {"id": "post", "target": "down", "notify.slack": {"text": "hi"}},
              inv=inv)
    assert ran.end("post").data["message"] == \
        "slack webhook of target 'down': cannot connect: connection refused"


def test_no_answer_in_time_says_the_delivery_is_unknown(tmp_path, inbox):
    hook = f"{inbox.url}/hooks/slow?delay=3&test={time.time()}"
    ran = run(tmp_path, inbox, {"id": "hook", "timeout": 1,
                                "notify.webhook": {"url": hook, "json": {}}})
    assert ran.status == "failed"
    assert ran.end("hook").data["message"].endswith(
        "no answer in time — the request may or may not have been delivered")
    assert len(inbox.received("webhook")) == 1  # not re-sent blindly


def test_pagerduty_rejects_an_unknown_routing_key_with_its_reason(tmp_path, inbox):
    target = yaml.safe_load(inbox.inventory.read_text())["targets"]["oncall"]["pagerduty"]
    inv = inventory(inbox, tmp_path, other={"pagerduty": {**target, "routing_key": "a" * 32}})
    ran = run(tmp_path, inbox, {"id": "page", "target": "other",
                                "notify.pagerduty": {"summary": "x"}}, inv=inv)
    assert ran.end("page").data["message"] == ("pagerduty events API (pagerduty target 'other'): "
                                               "HTTP 400: Event object is invalid; "
                                               "[\"'routing_key' is invalid\"]")
    assert "a" * 32 not in json.dumps(journal_lines(tmp_path / "state"))


def test_statuspage_wrong_key_is_a_401(tmp_path, inbox):
    target = yaml.safe_load(inbox.inventory.read_text())["targets"]["status_page"]["statuspage"]
    inv = inventory(inbox, tmp_path, page={"statuspage": {**target, "api_key": "not-the-key"}})
    ran = run(tmp_path, inbox, {"id": "open", "target": "page",
                                "notify.statuspage": {"name": "x", "body": "y"}}, inv=inv)
    assert ran.end("open").data["message"] == \
        "statuspage POST /incidents (statuspage target 'page'): HTTP 401: Could not authenticate"
