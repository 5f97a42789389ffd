"""The lab's PostgreSQL: a primary with the seeded ``erp`` database and its streaming replica.

Servers run from the machine's own binaries (``initdb``, ``pg_ctl``,
``pg_basebackup`` of one installation), as the ``postgres`` user when we are
root (initdb refuses root), with their data, logs and unix sockets in the
lab's runtime dir. The superuser connects through the socket without a
password (``admin_dsn``); the ``erp`` role over TCP with the password in the
lab's passfile, which its DSNs name, so no DSN carries a secret.
"""
from __future__ import annotations

import os
import pwd
import secrets
import signal
import subprocess
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from engine.connections.postgres import connect, fetch_value, find_pg_tool
from engine.errors import ActionError, LabError
from engine.lab.processes import STARTUP_TIMEOUT, owned_pid, pid_alive, wait_until

__all__ = ["DATABASE", "APP_ROLE", "SERVER_OS_USER", "SEED_COUNTS", "server_account",
           "server_bin_dir", "start_servers", "stop_server", "seed_tables", "query_value",
           "wait_for_replay", "server_status", "database_target"]

DATABASE = "erp"
APP_ROLE = "erp"
SERVER_OS_USER = "postgres"
SEED_COUNTS = {"users": 50, "orders": 200}


# --------------------------------------------------------------------------
# Running things as the server user
# --------------------------------------------------------------------------

def server_account() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise LabError(f"running as root, but there is no '{SERVER_OS_USER}' user to run "
                       f"PostgreSQL as (initdb refuses root): create it, or run as a normal user") from None


def _as_server_user(argv: list[str]) -> list[str]:
    if server_account() is None:
        return argv
    return ["runuser", "-u", SERVER_OS_USER, "--"] + argv


def _run_server_tool(argv: list[str], what: str, cwd: Path, timeout: float = 60) -> str:
    """Run a PostgreSQL program as the server user; its stdout, or LabError with its stderr."""
    try:
        done = subprocess.run(_as_server_user(argv), cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, start_new_session=True)
    except subprocess.TimeoutExpired:
        raise LabError(f"{what}: timed out after {timeout:.0f} s") from None
    except OSError as exc:
        raise LabError(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise LabError(f"{what} failed (rc={done.returncode}): {tail}")
    return done.stdout


def server_bin_dir() -> Path:
    """The directory with initdb, pg_ctl and pg_basebackup (all from one installation)."""
    try:
        initdb = find_pg_tool("initdb", prefer_path=False)
    except ActionError:
        raise LabError("PostgreSQL server programs (initdb, pg_ctl) not found in `pg_config --bindir`, "
                       "/usr/lib/postgresql/*/bin or PATH: install them (apt-get install postgresql)") from None
    return Path(initdb).parent


# --------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------

def _postgresql_conf(port: int, socket_dir: Path, cluster_name: str) -> str:
    # fsync off: a lab is thrown away, and it makes initdb and checkpoints instant
    return "\n".join([
        "", "# --- runbook lab ---",
        "listen_addresses = '127.0.0.1'",
        f"port = {port}",
        f"unix_socket_directories = '{socket_dir}'",
        f"cluster_name = '{cluster_name}'",
        "fsync = off",
        # segments in the data dir, not /dev/shm: a killed lab leaks nothing there
        "dynamic_shared_memory_type = mmap",
        "shared_buffers = 16MB",
        "max_connections = 40",
        "max_wal_senders = 5",
        "wal_keep_size = '64MB'",
        "hot_standby_feedback = on",
        "wal_receiver_status_interval = 1s",
        "log_line_prefix = '%m [%p] %q%a '",
        "",
    ])


def _admin_dsn(socket_dir: Path, port: int, dbname: str = "postgres", user: str = SERVER_OS_USER) -> str:
    return f"host={socket_dir} port={port} dbname={dbname} user={user} connect_timeout=5"


def query_value(dsn: str, sql: str):
    """The first column of the first row of ``sql`` on a new connection to ``dsn``."""
    with connect(dsn) as conn:
        return fetch_value(conn, sql)


def _pg_ctl_start(bindir: Path, data_dir: Path, log: Path, runtime: Path) -> None:
    _run_server_tool([str(bindir / "pg_ctl"), "-D", str(data_dir), "-l", str(log), "-w",
                      "-t", str(int(STARTUP_TIMEOUT)), "start"],
                     f"starting PostgreSQL in {data_dir} (log: {log})", cwd=runtime,
                     timeout=STARTUP_TIMEOUT + 5)


def _append_conf(data_dir: Path, text: str) -> None:
    # the file belongs to the server user; appending as root keeps its owner and mode
    with open(data_dir / "postgresql.conf", "a") as conf:
        conf.write(text)


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


def _start_primary(bindir: Path, runtime: Path, port: int) -> dict:
    data_dir = runtime / "primary"
    _run_server_tool([str(bindir / "initdb"), "-D", str(data_dir), "-U", SERVER_OS_USER,
                      "-E", "UTF8", "--locale=C", "-N", "--auth-local=trust",
                      "--auth-host=scram-sha-256"], "initdb of the primary", cwd=runtime)
    _append_conf(data_dir, _postgresql_conf(port, runtime, "primary_db"))
    log = runtime / "primary.log"
    _pg_ctl_start(bindir, data_dir, log, runtime)
    return {"name": "primary_db", "role": "primary", "port": port, "data_dir": str(data_dir),
            "log": str(log), "pid": _postmaster_pid(data_dir),
            "admin_dsn": _admin_dsn(runtime, port)}


def _start_replica(bindir: Path, runtime: Path, primary_port: int, port: int) -> dict:
    data_dir = runtime / "replica"
    _run_server_tool([str(bindir / "pg_basebackup"), "-h", str(runtime), "-p", str(primary_port),
                      "-U", SERVER_OS_USER, "-D", str(data_dir), "-R", "-X", "stream", "-c", "fast",
                      "--no-sync"],
                     "pg_basebackup of the replica", cwd=runtime)
    # the copied postgresql.conf is the primary's; later lines override its port and name
    _append_conf(data_dir, f"\nport = {port}\ncluster_name = 'replica_db'\n")
    log = runtime / "replica.log"
    _pg_ctl_start(bindir, data_dir, log, runtime)
    return {"name": "replica_db", "role": "replica", "port": port, "data_dir": str(data_dir),
            "log": str(log), "pid": _postmaster_pid(data_dir),
            "admin_dsn": _admin_dsn(runtime, port)}


def _release_orphaned_shared_memory(data_dir: Path) -> None:
    """Remove the SysV segment a killed postmaster left behind (``postmaster.pid``
    line 7 names it): deleting the data dir would otherwise leak it for good.
    Processes of the dead server still attached keep it until they exit."""
    try:
        key, shmid = (int(v) for v in (data_dir / "postmaster.pid").read_text().splitlines()[6].split())
        segments = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except (OSError, ValueError, IndexError):
        return
    for line in segments:
        fields = line.split()  # key shmid perms size cpid lpid nattch ...
        if int(fields[0]) == key and int(fields[1]) == shmid:
            subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True, check=False)


def stop_server(bindir: Path | None, data_dir: Path, runtime: Path) -> bool:
    """Stop the server of ``data_dir`` if it runs; True if one was running."""
    pid = _postmaster_pid(data_dir)
    if not owned_pid(pid, str(data_dir)):
        _release_orphaned_shared_memory(data_dir)
        return False
    if bindir and (bindir / "pg_ctl").exists():
        try:
            _run_server_tool([str(bindir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w",
                              "-t", "15", "stop"], f"stopping {data_dir}", cwd=runtime, timeout=20)
        except LabError:
            pass  # fall back to signals below
    if pid_alive(pid):
        # SIGQUIT is PostgreSQL's immediate shutdown; SIGKILL would orphan shared memory
        os.kill(pid, signal.SIGQUIT)
        wait_until(lambda: not pid_alive(pid), 10, f"PostgreSQL {pid} to exit")
    return True


def start_servers(lab_dir: Path, runtime: Path, bindir: Path, state: dict,
                  ports: tuple[int, int], save: Callable[[], None]) -> None:
    """Start the primary (seeded) and its replica into ``state``; ``save()`` after each
    server starts, so a crash half-way leaves something to clean up."""
    primary_port, replica_port = ports
    password = secrets.token_urlsafe(18)
    passfile = _write_passfile(lab_dir, password)
    state["passfile"] = str(passfile)

    state["primary"] = _start_primary(bindir, runtime, primary_port)
    save()
    _create_app_database(state["primary"]["admin_dsn"], password)
    seed_tables(runtime, primary_port)

    state["replica"] = _start_replica(bindir, runtime, primary_port, replica_port)
    save()
    for server in (state["primary"], state["replica"]):
        server["dsn"] = _app_dsn(server["port"], passfile)
    wait_until(lambda: _replica_streaming(state["primary"]["admin_dsn"]), STARTUP_TIMEOUT,
               "the replica to stream from the primary")


# --------------------------------------------------------------------------
# Seed data and the erp role
# --------------------------------------------------------------------------

_SEED_SQL = """
DROP TABLE IF EXISTS orders, users CASCADE;
CREATE TABLE users (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL UNIQUE,
    balance numeric(12,2) NOT NULL DEFAULT 0,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO users (name, email, balance, active, created_at)
SELECT 'User ' || i, 'user' || i || '@example.com', (i * 12.5)::numeric(12,2), i % 7 <> 0,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 day'
FROM generate_series(1, {users}) AS i;
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users(id),
    amount numeric(12,2) NOT NULL,
    placed_at timestamptz NOT NULL
);
INSERT INTO orders (user_id, amount, placed_at)
SELECT 1 + (i % {users}), (i % 97) + 0.99, timestamptz '2024-03-01 00:00:00+00' + i * interval '1 hour'
FROM generate_series(1, {orders}) AS i;
""".format(**SEED_COUNTS)


def _create_app_database(admin_dsn: str, password: str) -> None:
    """The ``erp`` role and its database.

    The role is a superuser, as a DR operator's usually is: ``pg_promote()`` is
    superuser-only by default, and a restore replays the dump's GRANTs, which
    a plain owner may not be allowed to give.
    """
    from psycopg import sql

    with connect(admin_dsn) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            sql.Identifier(APP_ROLE), sql.Literal(password)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(DATABASE), sql.Identifier(APP_ROLE)))


def seed_tables(runtime: Path, port: int) -> None:
    """(Re)create ``users`` and ``orders`` with their seed rows, owned by the erp role."""
    with connect(_admin_dsn(runtime, port, DATABASE, APP_ROLE)) as conn:
        conn.execute(_SEED_SQL)


# --------------------------------------------------------------------------
# Replication, status, inventory
# --------------------------------------------------------------------------

def _replica_streaming(primary_admin_dsn: str) -> bool:
    return bool(query_value(primary_admin_dsn,
                            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"))


def wait_for_replay(primary_admin_dsn: str, replica_admin_dsn: str, timeout: float) -> None:
    """Block until the replica has replayed everything the primary has written."""
    target = query_value(primary_admin_dsn, "SELECT pg_current_wal_lsn()::text")

    def caught_up() -> bool:
        return bool(query_value(replica_admin_dsn,
                                f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"))

    wait_until(caught_up, timeout, "the replica to catch up")


def server_status(server: dict) -> dict:
    data_dir = Path(server["data_dir"])
    pid = _postmaster_pid(data_dir)
    running = owned_pid(pid, str(data_dir))
    status = {"running": running, "pid": pid if running else None, "port": server["port"],
              "dsn": server.get("dsn"), "role": None}
    if running:
        try:
            in_recovery = query_value(server["admin_dsn"], "SELECT pg_is_in_recovery()")
            status["role"] = "replica" if in_recovery else "primary"
        except Exception as exc:  # running but not accepting connections (starting, shutting down)
            status["error"] = str(exc).strip().splitlines()[0]
    return status


def _app_dsn(port: int, passfile: Path) -> str:
    return f"postgresql://{APP_ROLE}@127.0.0.1:{port}/{DATABASE}?passfile={quote(str(passfile), safe='/')}"


def _write_passfile(lab_dir: Path, password: str) -> Path:
    passfile = lab_dir / "pgpass"
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"127.0.0.1:*:*:{APP_ROLE}:{password}\n")
    return passfile


def database_target(server: dict, state: dict) -> dict:
    return {"dsn": server["dsn"], "host": "127.0.0.1", "port": server["port"],
            "database": DATABASE, "user": APP_ROLE, "role": server["role"],
            "data_dir": server["data_dir"], "admin_dsn": server["admin_dsn"],
            "os_user": state["os_user"], "pg_bin_dir": state["pg_bin_dir"]}

