"""Reports, history and the live view from the shared PostgreSQL store (a real lab server)."""
from __future__ import annotations

import re
import urllib.request

from helpers.run import runbook_cli, start_cli, write_runbook

from test_state_pg import create_state_db, drop_state_db  # the same fresh-database recipe

import pytest

RUNBOOK = """\
name: Shared report
rto: 5m
steps:
  - name: One
    command: [echo, one]
  - name: Two
    command: [sh, -c, "exit 3"]
    ignore_errors: true
"""


@pytest.fixture
def state_url(pg_lab):
    db = create_state_db(pg_lab)
    yield db
    drop_state_db(pg_lab, db)


def test_report_history_and_serve_read_the_postgresql_store(state_url, tmp_path):
    env = {"RUNBOOK_STATE_URL": state_url.url}
    write_runbook(tmp_path, RUNBOOK, "shared.yaml")
    assert runbook_cli("run", "shared.yaml", "--run-id", "pg-1", cwd=tmp_path, env=env).rc == 0
    md = runbook_cli("report", "pg-1", cwd=tmp_path, env=env).stdout
    assert "# Run pg-1: Shared report" in md and "hash chain verified" in md
    junit = runbook_cli("report", "pg-1", "--format", "junit", cwd=tmp_path, env=env).stdout
    assert 'failures="0"' in junit
    history = runbook_cli("history", "shared.yaml", cwd=tmp_path, env=env).stdout
    assert re.search(r"pg-1 +run +completed .* met", history)
    server = start_cli("serve", "--port", "0", cwd=tmp_path, env=env)
    try:
        url = re.search(r"on (http://\S+/)", server.stderr.readline()).group(1)
        page = urllib.request.urlopen(url + "run/pg-1", timeout=20).read().decode()
        assert 'data-step="one"' in page and "completed" in page
    finally:
        server.terminate()
        server.wait(10)
    output = md + junit + history + page
    assert state_url.password not in output
