"""file.checksum, file.exists, http.check and http.request against real files
and a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from helpers.run import http_server, run_inprocess

from engine.actions import get_action  # noqa: E402
from engine.actions.base import ActionError, Context  # noqa: E402


def run_action(name: str, args, *, deadline: float | None = None):
    ctx = Context()
    ctx.bind_step(deadline, lambda expr: False)
    return get_action(name)().run(args, ctx)


# --- file.checksum ---

@pytest.fixture
def backup(tmp_path):
    path = tmp_path / "db.dump"
    path.write_bytes(b"PGDMP" + bytes(range(256)) * 100)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_checksum_matches_an_expected_sha256(backup):
    path, digest = backup
    result = run_action("file.checksum", {"path": str(path), "sha256": digest.upper()})
    assert result.ok
    assert result.data["sha256"] == digest
    assert result.data["bytes"] == path.stat().st_size


def test_checksum_matches_a_sha256sum_file(backup, tmp_path):
    path, digest = backup
    other = "0" * 64
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{other}  other.dump\n{digest} *{path.name}\n")
    assert run_action("file.checksum", {"path": str(path), "sha256_file": str(sums)}).ok


def test_checksum_mismatch_fails_the_step(backup, tmp_path):
    path, digest = backup
    sums = tmp_path / "db.dump.sha256"
    sums.write_text(f"{'ab' * 32}  {path.name}\n")
    result = run_action("file.checksum", {"path": str(path), "sha256_file": str(sums)})
    assert not result.ok
    assert result.message.startswith(f"checksum mismatch for {path}: expected abababab")
    assert digest[:16] in result.message


def test_checksum_of_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ActionError, match="file not found: .*missing.dump"):
        run_action("file.checksum", {"path": str(tmp_path / "missing.dump")})


def test_checksum_step_in_a_runbook_with_a_sidecar_sum_file(backup, tmp_path):
    path, digest = backup
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    ran = run_inprocess(tmp_path, """
        name: checksum
        inputs: {backup_file: {type: string, required: true}}
        steps:
          - name: Verify backup integrity
            id: verify
            file.checksum: {path: "{{ backup_file }}", sha256_file: "{{ backup_file }}.sha256"}
            register: sum
    """, extra=[f"backup_file={path}"])
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.value("verify")["sha256"] == digest


# --- file.exists ---

def test_exists_reports_type_and_size(tmp_path):
    (tmp_path / "f").write_text("12345")
    result = run_action("file.exists", {"path": str(tmp_path / "f"), "type": "file", "min_bytes": 5})
    assert result.ok and result.data["bytes"] == 5 and result.data["type"] == "file"


@pytest.mark.parametrize("args, message", [
    ({"path": "MISSING"}, "does not exist"),
    ({"path": "f", "type": "directory"}, "is a file, not a directory"),
    ({"path": "f", "min_bytes": 10}, "fewer than 10"),
    ({"path": "f", "state": "absent"}, "exists"),
])
def test_exists_fails_with_a_reason(tmp_path, args, message):
    (tmp_path / "f").write_text("12345")
    args = {**args, "path": str(tmp_path / args["path"])}
    result = run_action("file.exists", args)
    assert not result.ok and message in result.message


def test_exists_absent_succeeds_for_a_missing_path(tmp_path):
    assert run_action("file.exists", {"path": str(tmp_path / "gone"), "state": "absent"}).ok


# --- http.check ---

@pytest.fixture
def web():
    routes = {
        "/health": (200, "application/json", json.dumps({"status": "up", "db": {"ok": True}}), 0),
        "/text": (200, "text/plain", "all systems nominal", 0),
        "/down": (503, "text/plain", "maintenance", 0),
        "/slow": (200, "text/plain", "finally", 0.4),
        "/hung": (200, "text/plain", "too late", 3),
        "/hook": (201, "application/json", '{"accepted": true}', 0),
    }
    with http_server(routes) as (url, received):
        yield url, received


def test_http_check_reports_status_latency_body_and_json(web):
    url, _ = web
    result = run_action("http.check", {"url": f"{url}/health"})
    assert result.ok
    assert result.data["status"] == 200
    assert result.data["json"] == {"status": "up", "db": {"ok": True}}
    assert json.loads(result.data["body"])["status"] == "up"
    assert 0 < result.data["elapsed_ms"] < 2000


def test_http_check_body_contains(web):
    url, _ = web
    assert run_action("http.check", {"url": f"{url}/text", "body_contains": "nominal"}).ok
    result = run_action("http.check", {"url": f"{url}/text", "body_contains": "degraded"})
    assert not result.ok and "does not contain 'degraded'" in result.message


def test_http_check_unexpected_status_fails_and_expected_list_passes(web):
    url, _ = web
    result = run_action("http.check", {"url": f"{url}/down"})
    assert not result.ok and result.message == "HTTP 503, expected 200"
    assert run_action("http.check", {"url": f"{url}/down", "status": [200, 503]}).ok
    assert run_action("http.check", {"url": f"{url}/down", "status": "200, 503"}).ok


def test_http_check_max_latency(web):
    url, _ = web
    result = run_action("http.check", {"url": f"{url}/slow", "max_latency": "100ms"})
    assert not result.ok and "more than 100 ms" in result.message
    assert run_action("http.check", {"url": f"{url}/slow", "max_latency": "5s"}).ok


def test_http_check_timeout_is_an_error(web):
    url, _ = web
    start = time.monotonic()
    with pytest.raises(ActionError, match="timed out"):
        run_action("http.check", {"url": f"{url}/hung", "timeout": "200ms"})
    assert time.monotonic() - start < 2


def test_http_check_connection_refused_is_an_error():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ActionError, match=f"127.0.0.1:{port}"):
        run_action("http.check", {"url": f"http://127.0.0.1:{port}/"})


def test_http_check_result_is_usable_in_verify(web, tmp_path):
    url, _ = web
    ran = run_inprocess(tmp_path, f"""
        name: health
        steps:
          - id: health
            http.check: {{url: "{url}/health"}}
            register: health
            verify:
              - that: health.json.db.ok and health.status == 200
              - that: health.elapsed_ms < 2000
    """)
    assert ran.status == "completed", ran.handle.outcome.message
    assert len(ran.of("health", "verify.passed")) == 2


# --- http.request ---

def test_http_request_posts_json_and_headers(web):
    url, received = web
    result = run_action("http.request", {"url": f"{url}/hook", "json": {"status": "monitoring"},
                                         "headers": {"X-Incident": "42"}, "status": 201})
    assert result.ok and result.data["json"] == {"accepted": True}
    assert result.changed  # a POST that succeeded changed something (it used to say no)
    assert received[-1]["method"] == "POST"
    assert json.loads(received[-1]["body"]) == {"status": "monitoring"}
    assert received[-1]["headers"]["Content-Type"] == "application/json"
    assert received[-1]["headers"]["X-Incident"] == "42"


def test_http_request_method_and_body(web):
    url, received = web
    result = run_action("http.request", {"url": f"{url}/hook", "method": "put",
                                         "body": "raw text", "status": 201})
    assert received[-1]["method"] == "PUT" and received[-1]["body"] == "raw text"
    assert result.changed
    read = run_action("http.request", {"url": f"{url}/hook", "method": "get", "status": [200, 201]})
    assert read.ok and not read.changed


def test_http_request_is_only_planned_in_a_dry_run(web, tmp_path):
    url, received = web
    ran = run_inprocess(tmp_path, f"""
        name: notify
        steps:
          - id: health
            http.check: {{url: "{url}/health"}}
          - id: notify
            http.request: {{url: "{url}/hook", json: {{status: resolved}}}}
    """, dry_run=True)
    assert ran.status == "completed"
    assert ran.end("health").type == "step.succeeded"
    assert ran.end("notify").type == "step.planned"
    assert ran.end("notify").data["plan"] == f"POST {url}/hook"
    assert [r["path"] for r in received] == ["/health"]
