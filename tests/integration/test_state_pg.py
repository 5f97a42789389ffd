"""The shared journal in PostgreSQL, against a real server from the lab (no mocks).

Every scenario drives the real ``runbook`` command in subprocesses with
``RUNBOOK_STATE_URL`` set, each "machine" in a working directory of its own.
The state tables live in a fresh database per test module (and one more per
schema test), owned by the lab's ``erp`` role. The URL carries the role's
password, so every command's output is also checked for it.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from engine.errors import RunHeld
from engine.journal.file import Journal

import psycopg  # noqa: E402  (a core dependency)


# --------------------------------------------------------------------------- helpers

def lab_password(lab: dict) -> str:
    """The erp role's password, from the lab's passfile (host:port:db:user:password)."""
    return Path(lab["passfile"]).read_text().splitlines()[0].split(":", 4)[4]


def admin(lab: dict, dbname: str = "postgres"):
    dsn = lab["primary"]["admin_dsn"].replace("dbname=postgres", f"dbname={dbname}")
    return psycopg.connect(dsn, autocommit=True)


@dataclass
class StateDb:
    name: str
    url: str
    password: str

    def rows(self, run_id: str) -> list[dict]:
        """The run's rows, each line parsed, in seq order."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            found = conn.execute("SELECT seq, line, hash FROM runbook_events WHERE run_id = %s "
                                 "ORDER BY seq", (run_id,)).fetchall()
        return [{**json.loads(line), "_seq": seq, "_hash": digest} for seq, line, digest in found]

    def execute(self, sql: str, params=()) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql, params)

    def value(self, sql: str, params=()):
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchone()[0]


def create_state_db(lab: dict) -> StateDb:
    name = f"runbook_state_{secrets.token_hex(4)}"
    with admin(lab) as conn:
        conn.execute(f'CREATE DATABASE "{name}" OWNER erp')
    password = lab_password(lab)
    url = f"postgresql://erp:{quote(password, safe='')}@127.0.0.1:{lab['primary']['port']}/{name}"
    return StateDb(name, url, password)


def drop_state_db(lab: dict, db: StateDb) -> None:
    with admin(lab) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def state_db(pg_lab):
    """A database of this module's own for the state tables."""
    db = create_state_db(pg_lab)
    yield db
    drop_state_db(pg_lab, db)


@pytest.fixture
def fresh_state_db(pg_lab):
    """An empty database for one test (no runbook tables yet)."""
    db = create_state_db(pg_lab)
    yield db
    drop_state_db(pg_lab, db)


@dataclass
class Cli:
    rc: int
    stdout: str
    stderr: str


def env_for(db: StateDb) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RUNBOOK_STATE_DIR", "RUNBOOK_OPERATOR")}
    env["RUNBOOK_STATE_URL"] = db.url
    # the checkout under test, not whatever 'engine' the interpreter would import
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[2]),
                                                     env.get("PYTHONPATH", "")) if p)
    return env


def runbook(db: StateDb, *args: str, cwd: Path, timeout: float = 60) -> Cli:
    """``runbook ARGS`` on one "machine" (``cwd``); its output never shows the password."""
    done = subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, env=env_for(db),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert db.password not in done.stdout + done.stderr
    return Cli(done.returncode, done.stdout, done.stderr)


def start_runbook(db: StateDb, *args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=cwd, env=env_for(db),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def machines(tmp_path: Path, *names: str) -> list[Path]:
    dirs = [tmp_path / name for name in names]
    for directory in dirs:
        directory.mkdir()
    return dirs


def write_runbook(directory: Path, text: str) -> None:
    (directory / "rb.yaml").write_text(text)


def gated(go: Path, then: str = "  - name: work\n    command: ['true']\n") -> str:
    return (f"name: Shared run\nsteps:\n  - name: gate\n    command: [test, -f, '{go}']\n" + then)


def wait_for(check, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------- scenarios

def test_run_started_on_one_machine_is_resumed_shown_and_verified_from_another(state_db, tmp_path):
    a, b = machines(tmp_path, "a", "b")
    go = tmp_path / "go"
    write_runbook(a, gated(go))
    failed = runbook(state_db, "run", "rb.yaml", "--run-id", "shared", "--operator", "alice", cwd=a)
    assert failed.rc == 1, failed.stderr
    go.touch()

    resumed = runbook(state_db, "resume", "shared", "--operator", "bob", cwd=b)
    assert resumed.rc == 0, resumed.stderr
    rows = state_db.rows("shared")
    assert [r["_seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0]["type"] == "run.started" and rows[0]["operator"] == "alice"
    assert [r["operator"] for r in rows if r["type"] == "run.resumed"] == ["bob"]
    assert rows[-1]["type"] == "run.completed"
    assert not list(tmp_path.rglob("journal.jsonl"))  # the events live only in the table

    listed = [json.loads(line) for line in
              runbook(state_db, "runs", "--output", "json", cwd=b).stdout.splitlines()]
    shared = [r for r in listed if r["run_id"] == "shared"]
    assert shared and shared[0]["status"] == "completed" and shared[0]["operator"] == "alice"
    assert shared[0]["runbook"] == "Shared run"
    shown = runbook(state_db, "show", "shared", cwd=b)
    assert shown.rc == 0 and "Shared run — completed" in shown.stdout and "by alice" in shown.stdout
    assert "gate" in shown.stdout and "work" in shown.stdout

    verified = runbook(state_db, "audit", "verify", "shared", cwd=b)
    assert verified.rc == 0, verified.stdout + verified.stderr
    assert f"ok: {len(rows)} events, head {rows[-1]['_hash']}" in verified.stdout

    edited = next(r["_seq"] for r in rows if r["type"] == "run.resumed")
    state_db.execute("UPDATE runbook_events SET line = replace(line, '\"operator\":\"bob\"', "
                     "'\"operator\":\"mallory\"') WHERE run_id = 'shared' AND seq = %s", (edited,))
    tampered = runbook(state_db, "audit", "verify", "shared", cwd=a)
    assert tampered.rc == 1
    assert f"TAMPERED: first bad event seq {edited}: hash mismatch" in tampered.stdout


def test_second_resume_of_a_held_run_exits_5_naming_the_holder_and_writes_nothing(state_db,
                                                                                 tmp_path):
    from engine.journal.postgres import PostgresStore

    a, b = machines(tmp_path, "a", "b")
    go = tmp_path / "go"
    write_runbook(a, gated(go, "  - name: slow\n    command: [sleep, '2']\n"))
    assert runbook(state_db, "run", "rb.yaml", "--run-id", "held", "--operator", "alice",
                   cwd=a).rc == 1
    go.touch()
    first = start_runbook(state_db, "resume", "held", "--operator", "alice", cwd=a)
    try:
        wait_for(lambda: any(r["type"] == "step.started" and r["step"]["id"] == "slow"
                             for r in state_db.rows("held")), what="the slow step to start")
        store = PostgresStore(state_db.url, tmp_path / "observer")
        assert store.summary("held").status == "running"
        store.close()
        rows_before = len(state_db.rows("held"))

        started = time.monotonic()
        second = runbook(state_db, "resume", "held", "--operator", "bob", cwd=b)
        elapsed = time.monotonic() - started
        assert second.rc == 5, second.stdout + second.stderr
        assert first.poll() is None, "the loser must not wait for the holder"
        assert elapsed < 2.0
        assert (f"run held is held by operator alice on host {socket.gethostname()} "
                f"(pid {first.pid})") in second.stderr
        assert len(state_db.rows("held")) == rows_before
        assert first.wait(timeout=30) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    rows = state_db.rows("held")
    assert rows[-1]["type"] == "run.completed"
    assert all(r["operator"] == "alice" for r in rows)  # not one row from the loser
    assert runbook(state_db, "audit", "verify", "held", cwd=b).rc == 0
    assert state_db.value("SELECT count(*) FROM runbook_holders WHERE run_id = 'held'") == 0


def test_approval_from_a_third_machine_unblocks_the_paused_run(state_db, tmp_path):
    a, c = machines(tmp_path, "a", "c")
    done = tmp_path / "done.txt"
    write_runbook(a, "name: Failover\nsteps:\n  - name: Sign off\n"
                     "    approve: {approvers: [carol], separate_duty: true}\n"
                     f"  - name: Promote\n    command: [touch, '{done}']\n")
    paused = runbook(state_db, "run", "rb.yaml", "--run-id", "appr", "--operator", "alice", cwd=a)
    assert paused.rc == 3, paused.stdout + paused.stderr
    assert "runbook approve appr sign-off" in paused.stdout

    approved = runbook(state_db, "approve", "appr", "sign-off", "--operator", "carol",
                       "--comment", "replica lag checked", cwd=c)
    assert approved.rc == 0, approved.stderr
    assert "quorum met" in approved.stdout
    assert not done.exists()

    finished = runbook(state_db, "resume", "appr", "--operator", "alice", cwd=a)
    assert finished.rc == 0, finished.stdout + finished.stderr
    assert done.exists()
    rows = state_db.rows("appr")
    granted = [r for r in rows if r["type"] == "approval.granted"]
    assert [(g["operator"], g["data"]["comment"]) for g in granted] == [
        ("carol", "replica lag checked")]
    assert rows[-1]["type"] == "run.completed"
    assert runbook(state_db, "audit", "verify", "appr", cwd=c).rc == 0


def test_run_with_an_existing_run_id_exits_5(state_db, tmp_path):
    (a,) = machines(tmp_path, "a")
    write_runbook(a, "name: Once\nsteps:\n  - name: a\n    command: ['true']\n")
    assert runbook(state_db, "run", "rb.yaml", "--run-id", "once", cwd=a).rc == 0
    again = runbook(state_db, "run", "rb.yaml", "--run-id", "once", cwd=a)
    assert again.rc == 5
    assert "run once already exists in postgresql://erp:***@127.0.0.1" in again.stderr
    assert len(state_db.rows("once")) == 4  # run.started, step.started, step.succeeded, run.completed


def test_unknown_run_is_exit_2(state_db, tmp_path):
    missing = runbook(state_db, "resume", "nope", cwd=tmp_path)
    assert missing.rc == 2 and "no run 'nope' in postgresql://erp:***@" in missing.stderr
    assert runbook(state_db, "show", "nope", cwd=tmp_path).rc == 2
    assert runbook(state_db, "audit", "verify", "nope", cwd=tmp_path).rc == 2


# --------------------------------------------------------------------------- the unique key

def test_a_writer_that_bypasses_the_lock_loses_the_seq_and_writes_nothing_more(state_db, tmp_path):
    from engine.journal.postgres import PostgresStore, TableSink

    store = PostgresStore(state_db.url, tmp_path / "state")
    journal, lock = store.create_run("race", "alice")
    rogue_connection = psycopg.connect(state_db.url, autocommit=True)
    try:
        journal.append("run.started", None, {"runbook": {"name": "Race"}})
        rogue = Journal(tmp_path / "rogue", "race", "mallory", "elsewhere", store.events("race"),
                        sink=TableSink(rogue_connection, "race", "test"))
        journal.append("operator.note", None, {"note": "first"})
        with pytest.raises(RunHeld, match="another process appended seq 2 to run race"):
            rogue.append("operator.note", None, {"note": "second"})
        with pytest.raises(RunHeld):
            rogue.append("operator.note", None, {"note": "third"})
        journal.append("operator.note", None, {"note": "fourth"})
    finally:
        journal.close()
        lock.release()
        rogue_connection.close()
    rows = state_db.rows("race")
    assert [(r["seq"], r["operator"]) for r in rows] == [(1, "alice"), (2, "alice"), (3, "alice")]
    result = store.verify("race")
    assert result.ok and result.count == 3 and result.head == rows[-1]["hash"]
    store.close()


def test_concurrent_writers_get_exactly_one_winner_per_seq_and_a_valid_chain(state_db, tmp_path):
    from engine.journal.postgres import PostgresStore, TableSink

    store = PostgresStore(state_db.url, tmp_path / "state")
    journal, lock = store.create_run("race2", "seed")
    journal.append("run.started", None, {"runbook": {"name": "Race"}})
    journal.close()
    lock.release()
    events = store.events("race2")
    barrier = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def writer(name: str) -> None:
        with psycopg.connect(state_db.url, autocommit=True) as connection:
            writer_journal = Journal(tmp_path / name, "race2", name, "host", events,
                                     sink=TableSink(connection, "race2", "test"))
            barrier.wait()
            written = 0
            try:
                for n in range(40):
                    writer_journal.append("operator.note", None, {"n": n})
                    written += 1
            except RunHeld:
                outcome[name] = ("lost", written)
                return
            outcome[name] = ("won", written)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(status for status, _ in outcome.values()) == ["lost", "won"]
    assert [written for status, written in outcome.values() if status == "lost"] == [0]
    rows = state_db.rows("race2")
    assert len(rows) == 41 and len({r["operator"] for r in rows[1:]}) == 1
    assert store.verify("race2").ok
    store.close()


def test_edited_columns_and_deleted_rows_are_named_by_verify(state_db, tmp_path):
    (a,) = machines(tmp_path, "a")
    write_runbook(a, "name: Audit\nsteps:\n  - name: a\n    command: ['true']\n"
                     "  - name: b\n    command: ['true']\n")
    for run_id in ("cols", "gap"):
        assert runbook(state_db, "run", "rb.yaml", "--run-id", run_id, cwd=a).rc == 0
    state_db.execute("UPDATE runbook_events SET type = 'step.skipped' "
                     "WHERE run_id = 'cols' AND seq = 3")
    columns = runbook(state_db, "audit", "verify", "cols", cwd=a)
    assert columns.rc == 1 and "first bad event seq 3" in columns.stdout
    state_db.execute("DELETE FROM runbook_events WHERE run_id = 'gap' AND seq = 2")
    gap = runbook(state_db, "audit", "verify", "gap", cwd=a)
    assert gap.rc == 1 and "first bad event seq 2" in gap.stdout


# --------------------------------------------------------------------------- schema, URL

def test_schema_is_created_on_first_use(fresh_state_db, tmp_path):
    exists = ("SELECT to_regclass('runbook_events') IS NOT NULL "
              "AND to_regclass('runbook_holders') IS NOT NULL")
    assert fresh_state_db.value(exists) is False
    listed = runbook(fresh_state_db, "runs", cwd=tmp_path)
    assert listed.rc == 0 and listed.stdout.strip() == "no runs"
    assert fresh_state_db.value(exists) is True
    columns = fresh_state_db.value(
        "SELECT array_agg(column_name::text ORDER BY ordinal_position) FROM information_schema.columns "
        "WHERE table_name = 'runbook_events'")
    assert columns == ["run_id", "seq", "ts", "type", "line", "hash"]
    key = fresh_state_db.value(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = 'runbook_events'::regclass AND contype = 'p'")
    assert key == "PRIMARY KEY (run_id, seq)"


def test_processes_creating_the_schema_at_once_all_succeed(fresh_state_db, tmp_path):
    procs = [start_runbook(fresh_state_db, "runs", cwd=tmp_path) for _ in range(4)]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0, 0], results


def test_unreachable_or_refusing_database_is_reported_without_the_password(fresh_state_db,
                                                                          tmp_path):
    wrong = StateDb(fresh_state_db.name,
                    fresh_state_db.url.replace(quote(fresh_state_db.password, safe=""),
                                               "Wr0ng-s3cret-pw"), "Wr0ng-s3cret-pw")
    refused = runbook(wrong, "runs", cwd=tmp_path)
    assert refused.rc == 1
    assert "cannot connect to the state database postgresql://erp:***@127.0.0.1" in refused.stderr
    assert "password authentication failed" in refused.stderr

    closed = StateDb("x", "postgresql://erp:Cl0sed-s3cret@127.0.0.1:1/x?connect_timeout=2",
                     "Cl0sed-s3cret")
    down = runbook(closed, "runs", cwd=tmp_path)
    assert down.rc == 1 and "postgresql://erp:***@127.0.0.1:1/x" in down.stderr

    bad = StateDb("x", "postgresql://erp:B4d-s3cret@127.0.0.1:notaport/x", "B4d-s3cret")
    invalid = runbook(bad, "runs", cwd=tmp_path)
    assert invalid.rc in (1, 2) and "internal error" not in invalid.stderr
