"""Defect 2: a holder of a shared run loses its advisory lock when the state server
restarts. It must notice before its next write and stop (exit 5, nothing written after
the loss), and no second holder may act on the run while the first is alive.

A lab of the test's own is restarted with ``pg_ctl restart`` (a real server restart)."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import psycopg
import pytest

from engine.journal.postgres import PostgresStore
from engine.lab.postgres import _run_server_tool, server_bin_dir

from integration.test_state_pg import (create_state_db, machines, runbook, start_runbook,
                                       wait_for, write_runbook)

SLOW = 8


def restart_server(lab: dict) -> None:
    server = lab["primary"]
    _run_server_tool([str(server_bin_dir() / "pg_ctl"), "-D", server["data_dir"], "-m", "fast",
                      "-w", "restart", "-l", server["log"]], "restart", cwd=Path(server["data_dir"]).parent)
    wait_for(lambda: _connectable(server["admin_dsn"]), what="the server to come back")


def _connectable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


@pytest.fixture
def own_state(spare_lab):
    lab = spare_lab("lockloss")
    return create_state_db(lab), lab


def test_a_holder_that_lost_its_lock_stops_and_no_second_holder_acts(own_state, tmp_path):
    db, lab = own_state
    a, b = machines(tmp_path, "a", "b")
    go, marks = tmp_path / "go", tmp_path / "marks"
    write_runbook(a, f"name: Shared\nsteps:\n  - name: gate\n    command: [test, -f, '{go}']\n"
                     f"  - name: slow\n    command: [sh, -c, 'echo start >> {marks}; "
                     f"sleep {SLOW}; echo end >> {marks}']\n"
                     f"  - name: after\n    command: [sh, -c, 'echo after >> {marks}']\n")
    assert runbook(db, "run", "rb.yaml", "--run-id", "lost", "--operator", "alice", cwd=a).rc == 1
    go.touch()
    first = start_runbook(db, "resume", "lost", "--operator", "alice", cwd=a)
    try:
        wait_for(lambda: marks.exists(), what="the slow step to start")
        rows_before = len(db.rows("lost"))
        restart_server(lab)
        time.sleep(0.2)
        second = runbook(db, "resume", "lost", "--operator", "bob", "--in-doubt", "rerun", cwd=b)
        assert second.rc == 5, second.stdout + second.stderr
        assert f"operator alice on host {socket.gethostname()} (pid {first.pid})" in second.stderr
        assert first.poll() is None
        store = PostgresStore(db.url, tmp_path / "observer")
        assert store.summary("lost").status == "running"
        store.close()
        rc = first.wait(timeout=60)
        err = first.stderr.read()
        assert rc == 5, err
        assert "lost" in err and "hold" in err, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert len(db.rows("lost")) == rows_before  # nothing written after the loss
    assert marks.read_text().split() == ["start", "end"]  # neither a second start nor 'after'
    done = runbook(db, "resume", "lost", "--operator", "bob", "--in-doubt", "skip", cwd=b)
    assert done.rc == 0, done.stderr
    assert marks.read_text().split() == ["start", "end", "after"]
    assert runbook(db, "audit", "verify", "lost", cwd=b).rc == 0


def test_resume_and_approve_refuse_a_tampered_shared_run(own_state, tmp_path):
    """Defect 3 with the PostgreSQL store: the chain is verified when a run is loaded."""
    db, _lab = own_state
    (a,) = machines(tmp_path, "a")
    go = tmp_path / "go"
    write_runbook(a, f"name: Shared\nsteps:\n  - name: gate\n    command: [test, -f, '{go}']\n"
                     f"  - name: act\n    command: [touch, '{tmp_path / 'acted'}']\n")
    assert runbook(db, "run", "rb.yaml", "--run-id", "t", "--operator", "alice", cwd=a).rc == 1
    bad = next(r["_seq"] for r in db.rows("t") if r["type"] == "step.failed")
    db.execute("UPDATE runbook_events SET line = replace(line, 'step.failed', 'step.succeeded'), "
               "type = 'step.succeeded' WHERE run_id = 't' AND seq = %s", (bad,))
    go.touch()
    done = runbook(db, "resume", "t", "--operator", "alice", cwd=a)
    assert done.rc == 2 and f"seq {bad}" in done.stderr, done.stdout + done.stderr
    assert not (tmp_path / "acted").exists()
