"""What the operator sees when an AWS step cannot work: one clear line naming the
service, operation and AWS error code — never a traceback, never a credential —
for unknown services and operations, bad parameters, missing credentials, an
unreachable endpoint, throttling (retried with backoff first) and bad settings.
"""
from __future__ import annotations

import base64
import http.server
import threading
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml
from helpers.run import journal_lines, run_inprocess, runbook_cli, write_runbook

DESCRIBE = """
name: describe
steps:
  - id: describe
    target: {target}
    aws.call: {{service: rds, operation: DescribeDBInstances}}
"""


def _inventory(tmp_path: Path, aws: dict, name: str = "account") -> str:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"targets": {name: {"aws": aws}}}))
    return str(path)


def _message(ran, step: str = "describe") -> str:
    end = ran.end(step)
    assert end.type == "step.failed", end.data
    return end.data["message"]


def test_validate_names_unknown_services_operations_and_parameters_with_suggestions(tmp_path):
    write_runbook(tmp_path, """
        name: typos
        steps:
          - aws.call: {service: route-53, operation: ChangeResourceRecordSets}
          - aws.call: {service: rds, operation: promote_read_replicas,
                       params: {DBInstanceIdentifier: itdo-erp-dr}}
          - aws.call:
              service: eks
              operation: UpdateNodegroupConfig
              params: {clusterName: itdo-erp-dr, nodegroupName: production-nodes,
                       scalingConfig: {minSize: 2, maxsize: 10, desiredSize: "4"}}
          - aws.wait: {service: rds, waiter: db_instance_availble}
    """)
    done = runbook_cli("validate", "runbook.yaml", cwd=tmp_path)
    assert done.rc == 2, done.output
    assert "Traceback" not in done.output
    lines = done.output.splitlines()
    assert any(line.startswith("runbook.yaml:3:") and line.endswith(
        "aws.call: unknown AWS service 'route-53' (did you mean 'route53'?)") for line in lines)
    assert any(line.startswith("runbook.yaml:4:") and line.endswith(
        "aws.call: rds has no operation 'promote_read_replicas' (did you mean "
        "'promote_read_replica'?)") for line in lines)
    assert ("aws.call: params.scalingConfig: unknown parameter 'maxsize' (did you mean 'maxSize'?)"
            in done.output)
    assert "aws.call: params.scalingConfig.desiredSize: expected integer, got string '4'" in done.output
    assert "aws.wait: rds has no waiter 'db_instance_availble' (did you mean 'db_instance_available'?)" \
        in done.output


def test_validate_of_literal_aws_steps_that_are_fine_reports_nothing(tmp_path):
    write_runbook(tmp_path, """
        name: fine
        inputs:
          zone: {type: string, default: Z123}
        steps:
          - aws.call:
              service: route53
              operation: change_resource_record_sets
              params:
                HostedZoneId: "{{ zone }}"
                ChangeBatch: {Changes: [{Action: UPSERT, ResourceRecordSet: {
                  Name: api.itdo-erp.com, Type: CNAME, TTL: "{{ 60 }}",
                  ResourceRecords: [{Value: api-dr.us-east-1.elb.amazonaws.com}]}}]}
          - aws.eks_scale_nodegroup: {cluster: itdo-erp-dr, nodegroup: production-nodes,
                                      min: 2, max: 10, desired: 4}
    """)
    done = runbook_cli("validate", "runbook.yaml", cwd=tmp_path)
    assert done.rc == 0, done.output


def test_no_credentials_is_one_clear_line(aws_world, tmp_path):
    inventory = _inventory(tmp_path, {"region": "us-east-1", "endpoint_url": aws_world["url"]})
    ran = run_inprocess(tmp_path, DESCRIBE.format(target="account"), inventories=[inventory])
    assert _message(ran) == (
        "rds DescribeDBInstances: no AWS credentials: give the target aws.access_key_id/"
        "secret_access_key (from secrets), aws.profile, or set them in the environment")


def test_an_unreachable_endpoint_is_one_clear_line(aws_world, tmp_path):
    inventory = _inventory(tmp_path, {"region": "us-east-1", "endpoint_url": "http://127.0.0.1:9",
                                      "access_key_id": "AKIAEXAMPLE", "secret_access_key": "s3cr3t-key",
                                      "max_attempts": 2, "connect_timeout": 2})
    ran = run_inprocess(tmp_path, DESCRIBE.format(target="account"), inventories=[inventory])
    assert _message(ran) == ('rds DescribeDBInstances: cannot reach http://127.0.0.1:9/: '
                             'connection refused')


@pytest.mark.parametrize("settings, message", [
    ({"regoin": "us-east-1"}, "target 'account': unknown aws setting 'regoin' (did you mean 'region'?)"),
    ({"profile": "no-such-profile"}, "aws profile 'no-such-profile' not found (in ~/.aws/config, "
                                     "~/.aws/credentials or AWS_CONFIG_FILE)"),
    ({"access_key_id": "AKIAEXAMPLE"}, "target 'account': aws.access_key_id and "
                                       "aws.secret_access_key go together"),
    ({"max_attempts": 0}, "target 'account': aws.max_attempts must be at least 1, got 0"),
])
def test_bad_target_settings_are_named(aws_world, tmp_path, settings, message):
    inventory = _inventory(tmp_path, settings)
    ran = run_inprocess(tmp_path, DESCRIBE.format(target="account"), inventories=[inventory])
    assert _message(ran) == message


# --------------------------------------------------------------------------
# Throttling: a loopback proxy that answers like AWS does when it throttles
# --------------------------------------------------------------------------

THROTTLED = (b'<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><Error>'
             b'<Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>'
             b'<RequestId>7f2ea2d7-throttled</RequestId></ErrorResponse>')


@contextmanager
def throttling_proxy(upstream: str, throttle: int):
    """Answer the first ``throttle`` requests with RDS's 400 Throttling, forward the rest."""
    seen: list[float] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            import time

            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(time.monotonic())
            if len(seen) <= throttle:
                return self._reply(400, THROTTLED, "text/xml")
            request = urllib.request.Request(upstream + self.path, data=body, method="POST",
                                             headers={k: v for k, v in self.headers.items()})
            with urllib.request.urlopen(request, timeout=10) as answer:
                self._reply(answer.status, answer.read(), answer.headers.get("Content-Type"))

        def _reply(self, status, payload, kind):
            self.send_response(status)
            self.send_header("Content-Type", kind or "text/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _throttled_inventory(tmp_path, aws_world, url: str, attempts: int) -> str:
    server = aws_world["server"]
    return _inventory(tmp_path, {"region": "us-east-1", "endpoint_url": url, "max_attempts": attempts,
                                 "access_key_id": server.access_key_id,
                                 "secret_access_key": server.secret_access_key})


def test_throttling_is_retried_with_backoff_and_then_succeeds(aws_world, tmp_path):
    with throttling_proxy(aws_world["url"], throttle=2) as (url, seen):
        inventory = _throttled_inventory(tmp_path, aws_world, url, attempts=4)
        ran = run_inprocess(tmp_path, DESCRIBE.format(target="account"), inventories=[inventory])
    assert ran.end("describe").type == "step.succeeded"
    assert ran.value("describe")["response"]["DBInstances"][0]["DBInstanceIdentifier"] == "itdo-erp-dr"
    assert len(seen) == 3


def test_throttling_that_does_not_stop_fails_clearly_after_the_attempts(aws_world, tmp_path):
    with throttling_proxy(aws_world["url"], throttle=100) as (url, seen):
        inventory = _throttled_inventory(tmp_path, aws_world, url, attempts=3)
        ran = run_inprocess(tmp_path, DESCRIBE.format(target="account"), inventories=[inventory])
    assert _message(ran) == (
        "rds DescribeDBInstances: Throttling: Rate exceeded (still throttled after 3 attempts with "
        "backoff; raise aws.max_attempts on the target or retry later)")
    assert len(seen) == 3


# --------------------------------------------------------------------------
# Assumed roles and credentials never shown
# --------------------------------------------------------------------------

def test_a_target_with_role_arn_assumes_the_role_and_masks_temporary_credentials(aws_world, tmp_path):
    server = aws_world["server"]
    inventory = _inventory(tmp_path, {
        "region": "us-east-1", "endpoint_url": aws_world["url"],
        "access_key_id": server.access_key_id, "secret_access_key": server.secret_access_key,
        "role_arn": "arn:aws:iam::123456789012:role/dr-operator", "external_id": "itdo-dr-7731"})
    runbook = """
name: whoami
steps:
  - id: whoami
    target: account
    aws.call: {service: sts, operation: GetCallerIdentity}
  - id: assume
    target: account
    aws.call: {service: sts, operation: AssumeRole,
               params: {RoleArn: "arn:aws:iam::123456789012:role/auditor", RoleSessionName: audit}}
  - id: echo
    debug: {msg: "{{ assume.response.Credentials }}"}
"""
    runbook = runbook.replace("  - id: assume\n", "  - id: assume\n    register: assume\n")
    ran = run_inprocess(tmp_path, runbook, inventories=[inventory])
    assert ran.status == "completed", [e.data.get("message") for e in ran.events]
    arn = ran.value("whoami")["response"]["Arn"]
    assert arn.startswith("arn:aws:sts::123456789012:assumed-role/dr-operator/runbook-")
    credentials = ran.value("assume")["response"]["Credentials"]
    assert credentials["SecretAccessKey"] == "***" and credentials["SessionToken"] == "***"
    assert credentials["AccessKeyId"].startswith("ASIA")


def _every_byte_under(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def _spellings(secret: str) -> list[bytes]:
    return [secret.encode(), base64.b64encode(secret.encode()), quote(secret, safe="").encode(),
            urllib.parse.quote_plus(secret).encode()]


def test_credentials_never_reach_the_console_the_journal_or_a_report(aws_world, tmp_path):
    write_runbook(tmp_path, """
        name: failover with secrets
        steps:
          - name: describe
            target: aws_dr
            aws.call: {service: rds, operation: DescribeDBInstances}
          - name: dns
            target: aws_primary
            aws.route53_upsert: {zone: itdo-erp.com, name: api.itdo-erp.com, type: CNAME,
                                 values: [api-dr.us-east-1.elb.amazonaws.com]}
          - name: show the target
            debug: {msg: "{{ targets.aws_dr }}"}
          - name: a failing call
            target: aws_dr
            aws.call: {service: rds, operation: PromoteReadReplica,
                       params: {DBInstanceIdentifier: no-such-db}}
            ignore_errors: true
    """)
    for output in ("text", "json"):
        done = runbook_cli("run", "runbook.yaml", "-i", aws_world["inventory"], "--state-dir", "state",
                           "--output", output, cwd=tmp_path)
        assert done.rc == 0, done.output
        for secret in aws_world["secrets"]:
            for spelling in _spellings(secret):
                assert spelling.decode() not in done.output
    report = runbook_cli("report", journal_lines(tmp_path / "state")[0]["run_id"], "--format", "md",
                         "--state-dir", "state", cwd=tmp_path)
    stored = _every_byte_under(tmp_path / "state") + report.output.encode()
    for secret in aws_world["secrets"]:
        for spelling in _spellings(secret):
            assert spelling not in stored
    failed = next(e for e in journal_lines(tmp_path / "state") if e["type"] == "step.failed")
    assert failed["data"]["message"] == ("rds DescribeDBInstances: DBInstanceNotFound: "
                                         "DBInstance no-such-db not found.")
