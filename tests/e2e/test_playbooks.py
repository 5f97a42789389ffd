"""The shipped playbooks, run for real through the CLI against the lab.

Each playbook runs as a ``python -m engine run`` subprocess against a lab of
this module's own (``engine.lab.sandbox.lab_up``): a PostgreSQL primary with a
streaming replica and the lab app. Afterwards the tests look at the servers
themselves: row counts and a checksum of every table's contents, which server
is in recovery, the files a backup wrote. A dry-run of each playbook must
leave all of that exactly as it was.

The failover drill changes the topology (the primary is stopped, the replica
promoted), so it gets a lab of its own.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.lab.sandbox import LabError, lab_down, lab_status, lab_up, server_bin_dir, wait_for_replica

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "playbooks"
_CHECKOUT = hashlib.sha256(str(REPO).encode()).hexdigest()[:8]
ANSWERS = "announce: {checklist: all}\n"


def _lab_dir(name: str) -> Path:
    """Stable per checkout, so the next session's lab_up cleans up after a killed one."""
    return Path(tempfile.gettempdir()) / f"runbook-e2e-playbooks-{name}-{_CHECKOUT}"


def _start_lab(name: str) -> dict:
    try:
        server_bin_dir()
    except LabError as exc:
        # .ci/run installs the server: in CI a missing server is a failure, not a skip
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL server programs on this machine: {exc}")
        pytest.skip(f"no PostgreSQL server programs on this machine (apt-get install postgresql): {exc}")
    return lab_up(_lab_dir(name))


@pytest.fixture(scope="module")
def lab():
    """The module's lab (primary + replica + app); the topology stays as it is."""
    state = _start_lab("main")
    yield state
    lab_down(state["dir"])


@pytest.fixture
def failover_lab():
    """A lab for one test that changes the topology."""
    state = _start_lab("failover")
    yield state
    lab_down(state["dir"])


# --------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------

@dataclass
class Ran:
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_playbook(name: str, lab: dict, workdir: Path, *args: str, answers: str | None = None) -> Ran:
    """``runbook run playbooks/NAME -i LAB_INVENTORY ARGS`` in ``workdir`` (own state dir)."""
    argv = [sys.executable, "-m", "engine", "run", str(PLAYBOOKS / name), "-i", lab["inventory"],
            "--state-dir", str(workdir / "state"), "--operator", "e2e", *args]
    if answers is not None:
        answers_file = workdir / "answers.yaml"
        answers_file.write_text(answers)
        argv += ["--answers", str(answers_file)]
    done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    return Ran(done.returncode, done.stdout, done.stderr)


# --------------------------------------------------------------------------
# What the servers hold
# --------------------------------------------------------------------------

def _connect(server: dict):
    import psycopg

    dsn = server["admin_dsn"].replace("dbname=postgres", "dbname=erp")
    return psycopg.connect(dsn, autocommit=True)


_TABLES_SQL = """
SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables
WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1
"""


def database_snapshot(server: dict) -> dict:
    """``{in_recovery, tables: {name: (rows, md5 of the rows' text)}}`` of one server."""
    with _connect(server) as conn:
        in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        tables = {}
        for (name,) in conn.execute(_TABLES_SQL).fetchall():
            if name == "public.lab_heartbeat":
                continue  # the lab app writes it every few seconds, as a real app writes
            rows, digest = conn.execute(
                f"SELECT count(*), md5(COALESCE(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "
                f"FROM {name} AS t").fetchone()
            tables[name] = (rows, digest)
    return {"in_recovery": in_recovery, "tables": tables}


def app_state(lab: dict) -> tuple[tuple[int, float], int]:
    """((code, delay) from the app's status file, what /health answers)."""
    try:
        with urllib.request.urlopen(lab["app"]["health_url"], timeout=5) as response:
            code = response.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    status_code, delay = Path(lab["app"]["status_file"]).read_text().split()
    return (int(status_code), float(delay)), code


def lab_snapshot(lab: dict) -> dict:
    """Everything a playbook could change in the lab."""
    wait_for_replica(lab)
    backups = Path(lab["backup_dir"])
    return {"primary": database_snapshot(lab["primary"]),
            "replica": database_snapshot(lab["replica"]),
            "app": app_state(lab),
            "backups": sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                              for p in backups.iterdir())}


def superuser_execute(server: dict, sql: str) -> None:
    with _connect(server) as conn:
        conn.execute(sql)


def count(server: dict, sql: str) -> int:
    with _connect(server) as conn:
        return conn.execute(sql).fetchone()[0]


def sha256sum_check(directory: Path, sha_file: Path) -> None:
    done = subprocess.run(["sha256sum", "-c", sha_file.name], cwd=directory, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------
# A backup to restore: backup.yaml run once for the module
# --------------------------------------------------------------------------

@dataclass
class Backup:
    ran: Ran
    run_id: str
    dump: Path
    manifest: Path


@pytest.fixture(scope="module")
def backup(lab, tmp_path_factory) -> Backup:
    workdir = tmp_path_factory.mktemp("backup")
    before = set(Path(lab["backup_dir"]).iterdir())
    ran = run_playbook("backup.yaml", lab, workdir, "--run-id", "e2e-backup")
    assert ran.rc == 0, ran.output
    new = set(Path(lab["backup_dir"]).iterdir()) - before
    dumps = [p for p in new if p.name.endswith(".dump")]
    assert len(dumps) == 1, sorted(p.name for p in new)
    dump = dumps[0]
    return Backup(ran, "e2e-backup", dump, dump.with_name(dump.name[: -len(".dump")] + ".manifest.json"))


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

def test_shipped_playbooks_validate():
    done = subprocess.run([sys.executable, "-m", "engine", "validate", str(PLAYBOOKS)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_backup_writes_a_verified_dump_and_manifest(lab, backup):
    dump, manifest = backup.dump, backup.manifest
    directory = dump.parent
    assert sorted(p.name for p in directory.glob(dump.name[: -len(".dump")] + ".*")) == sorted(
        [dump.name, dump.name + ".sha256", manifest.name, manifest.name + ".sha256"])
    sha256sum_check(directory, Path(dump.name + ".sha256"))
    sha256sum_check(directory, Path(manifest.name + ".sha256"))

    data = json.loads(manifest.read_text())
    assert data["run_id"] == backup.run_id
    assert data["operator"] == "e2e"
    assert data["database"]["name"] == "erp" and data["database"]["was_replica"] is False
    assert data["started_at"] <= data["finished_at"]
    # every table of the database, the lab app's own heartbeat table too
    assert data["tables"] == {"public.users": 50, "public.orders": 200, "public.lab_heartbeat": 1}
    (entry,) = data["files"]
    assert entry["name"] == dump.name
    assert entry["bytes"] == dump.stat().st_size
    assert entry["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()

    listing = subprocess.run(["pg_restore", "-l", str(dump)], capture_output=True, text=True)
    assert listing.returncode == 0, listing.stderr
    assert "TABLE public users" in listing.stdout and "TABLE public orders" in listing.stdout


def test_recovery_restores_a_damaged_database(lab, backup, tmp_path):
    good = lab_snapshot(lab)
    superuser_execute(lab["primary"], "DELETE FROM orders WHERE id > 20; "
                                      "DELETE FROM users WHERE id > 10 AND id NOT IN "
                                      "(SELECT user_id FROM orders); "
                                      "UPDATE users SET balance = 0")
    assert count(lab["primary"], "SELECT count(*) FROM users") < 50

    ran = run_playbook("database-recovery.yaml", lab, tmp_path, "-e", f"backup_file={backup.dump}",
                       "-e", "expected_users=50", answers=ANSWERS)

    assert ran.rc == 0, ran.output
    after = lab_snapshot(lab)  # waits for the replica to replay the restore
    assert after["primary"]["tables"] == good["primary"]["tables"]  # every row as it was
    assert after["replica"]["tables"] == good["primary"]["tables"]
    assert after["primary"]["tables"]["public.users"][0] == 50
    assert after["app"] == good["app"] == ((200, 0.0), 200)  # writers back, healthy
    assert (after["primary"]["in_recovery"], after["replica"]["in_recovery"]) == (False, True)


def test_recovery_refuses_a_corrupt_backup_before_stopping_anything(lab, backup, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    dump = Path(shutil.copy(backup.dump, copy))
    shutil.copy(backup.dump.with_name(backup.dump.name + ".sha256"), copy)
    with open(dump, "r+b") as handle:
        handle.seek(dump.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    before = lab_snapshot(lab)

    ran = run_playbook("database-recovery.yaml", lab, tmp_path, "-e", f"backup_file={dump}",
                       "-e", "expected_users=50", answers=ANSWERS)

    assert ran.rc == 1, ran.output
    assert "Verify backup integrity" in ran.output
    assert lab_snapshot(lab) == before  # the writers were never stopped, nothing restored


def test_failover_refuses_while_the_primary_answers(lab, tmp_path):
    before = lab_snapshot(lab)
    config = Path(lab["app_config_file"])  # what the lab app reads DATABASE_URL from
    configured = config.read_text()

    ran = run_playbook("database-failover.yaml", lab, tmp_path)

    assert ran.rc == 1, ran.output
    assert "the primary still answers" in ran.output
    assert lab_snapshot(lab) == before  # the replica was not promoted
    assert config.read_text() == configured == f"DATABASE_URL={lab['primary']['dsn']}\n"


def test_failover_drill_promotes_the_replica(failover_lab, tmp_path):
    lab = failover_lab
    config = Path(lab["app_config_file"])  # the lab app reads DATABASE_URL from it

    ran = run_playbook("database-failover.yaml", lab, tmp_path, "-e", "drill=true",
                       "--run-id", "e2e-failover")

    assert ran.rc == 0, ran.output
    services = lab_status(lab["dir"])["services"]
    assert services["primary_db"]["running"] is False  # the drill stopped it
    assert services["replica_db"]["role"] == "primary"
    promoted = database_snapshot(lab["replica"])
    assert promoted["in_recovery"] is False
    assert promoted["tables"]["public.users"][0] == 50
    assert promoted["tables"]["public.orders"][0] == 200
    # the write probe went in, and the last write before the outage survived
    assert count(lab["replica"], "SELECT count(*) FROM runbook_failover_probe "
                                 "WHERE run_id = 'e2e-failover'") == 1
    assert count(lab["replica"], "SELECT count(*) FROM runbook_drill_marker "
                                 "WHERE run_id = 'e2e-failover'") == 1
    superuser_execute(lab["replica"], "INSERT INTO users (name, email) VALUES ('after', 'a@x')")
    assert config.read_text() == f"DATABASE_URL={lab['replica']['dsn']}\n"
    assert app_state(lab)[1] == 200  # the app checks its database is a writable primary


@pytest.mark.parametrize("playbook, extra", [
    ("backup.yaml", []),
    ("database-recovery.yaml", ["-e", "expected_users=50"]),
    ("database-failover.yaml", ["-e", "drill=true"]),
])
def test_dry_run_changes_nothing(lab, backup, tmp_path, playbook, extra):
    config = Path(lab["app_config_file"])
    configured = config.read_text()
    args = [*extra, "--dry-run", "-e", f"backup_file={backup.dump}"]
    before = lab_snapshot(lab)
    backup_tree = sorted((p.name, p.stat().st_mtime_ns) for p in Path(lab["dir"]).rglob("*"))

    ran = run_playbook(playbook, lab, tmp_path, *args, answers=ANSWERS)

    assert ran.rc == 0, ran.output
    assert "DRY RUN" in ran.output
    assert lab_snapshot(lab) == before  # rows, table checksums, roles, app, backups
    assert sorted((p.name, p.stat().st_mtime_ns) for p in Path(lab["dir"]).rglob("*")) == backup_tree
    assert config.read_text() == configured
    assert lab_status(lab["dir"])["services"]["primary_db"]["running"] is True


def test_failover_health_fails_when_the_repoint_does_not_reach_the_app(failover_lab, tmp_path):
    # The lab app reads DATABASE_URL from its own file: a repoint written elsewhere leaves it
    # on the stopped primary, and the health check says so (it used to pass regardless).
    elsewhere = tmp_path / "not-what-the-app-reads.env"
    ran = run_playbook("database-failover.yaml", failover_lab, tmp_path, "-e", "drill=true",
                       "-e", f"app_config_file={elsewhere}")
    assert ran.rc == 1, ran.output
    assert "Check the application's health" in ran.output and "503" in ran.output
    assert elsewhere.read_text() == f"DATABASE_URL={failover_lab['replica']['dsn']}\n"
