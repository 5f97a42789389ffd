"""The lab: a local rehearsal sandbox of real services for drills and tests.

``lab_up(DIR)`` starts, from the machine's own PostgreSQL binaries:

- ``primary_db`` — a PostgreSQL primary with database ``erp`` (owned by the
  role ``erp``, a superuser like a DR operator's role) seeded with ``users``
  and ``orders``;
- ``replica_db`` — a streaming replica of it (``pg_basebackup -R -X stream``);
- ``app`` — a tiny HTTP service whose ``/health`` answers with a status code
  you switch for failure drills: ``GET /admin/status?code=503`` (optionally
  ``&delay=2`` seconds), or write ``503`` into ``DIR/app-status``.

and writes ``DIR/inventory.yaml`` for ``runbook run -i``.

Layout. PostgreSQL refuses to run as root and must reach its data and socket
directories, which a project checkout (or pytest's 0700 ``tmp_path``) often
does not allow. So the servers live in a *runtime dir*
``/dev/shm/runbook-lab-<hash of DIR>/`` (a RAM disk, for speed; ``/tmp`` when
/dev/shm is small or missing; ``$RUNBOOK_LAB_TMP`` overrides both), owned by
the ``postgres`` user when we run as root::

    DIR/                          (default .runbook/lab)
      lab.json                    the lab's description: ports, PIDs, paths, runtime dir
      inventory.yaml              targets for runbooks
      pgpass                      the erp role's password (0600), used via ?passfile=
      app-status, app.log         the app's switchable health and its log
      backups/                    a place for drills to write dumps
    /dev/shm/runbook-lab-<hash>/  runtime dir: primary/ and replica/ data dirs,
                                  their logs, the unix sockets, app.pid

DSNs carry no password: they name the passfile, so nothing secret reaches a
journal. The superuser ``postgres`` connects through the unix socket without a
password (``admin_dsn``); TCP connections need the password.

A lab whose owner died (a killed test run) is found through ``lab.json`` or the
runtime dir and stopped by the next ``lab_up`` of the same DIR. PIDs are only
signalled after ``/proc/PID/cmdline`` shows they belong to this lab (Linux).
"""
from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from engine.errors import LabError
from engine.lab.parts import LabContext, load_part

__all__ = ["LabError", "lab_up", "lab_down", "lab_status", "lab_reset", "wait_for_replica",
           "runtime_dir_for", "DEFAULT_LAB_DIR", "SEED_COUNTS"]

DEFAULT_LAB_DIR = Path(".runbook/lab")
STATE_FILE = "lab.json"
DATABASE = "erp"
APP_ROLE = "erp"
SERVER_OS_USER = "postgres"
SEED_COUNTS = {"users": 50, "orders": 200}
STARTUP_TIMEOUT = 30.0
MIN_SHM_BYTES = 1 << 30



# --------------------------------------------------------------------------
# Paths and state
# --------------------------------------------------------------------------

def _runtime_base() -> Path:
    """``$RUNBOOK_LAB_TMP``, else ``/dev/shm`` when it is roomy, else ``/tmp``.

    Creating a cluster writes about a thousand small files; on a RAM disk that
    takes milliseconds where a virtual disk can take seconds. Containers often
    cap /dev/shm at 64 MB, too small for two clusters, hence the size check.
    """
    if os.environ.get("RUNBOOK_LAB_TMP"):
        return Path(os.environ["RUNBOOK_LAB_TMP"])
    try:
        shm = os.statvfs("/dev/shm")
        if shm.f_bavail * shm.f_frsize >= MIN_SHM_BYTES and os.access("/dev/shm", os.W_OK):
            return Path("/dev/shm")
    except OSError:
        pass
    return Path("/tmp")


def runtime_dir_for(lab_dir: Path) -> Path:
    """Where the servers of the lab at ``lab_dir`` keep their data, logs and sockets."""
    digest = hashlib.sha256(str(Path(lab_dir).resolve()).encode()).hexdigest()[:12]
    return _runtime_base() / f"runbook-lab-{digest}"


def _load_state(lab_dir: Path) -> dict | None:
    try:
        return json.loads((lab_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _save_state(lab_dir: Path, state: dict) -> None:
    tmp = lab_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, lab_dir / STATE_FILE)


def _is_lab_dir(lab_dir: Path) -> bool:
    return (lab_dir / STATE_FILE).is_file()


# --------------------------------------------------------------------------
# Running things as the server user
# --------------------------------------------------------------------------

def _server_account() -> pwd.struct_passwd | None:
    """The account PostgreSQL runs as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        raise LabError(f"running as root, but there is no '{SERVER_OS_USER}' user to run "
                       f"PostgreSQL as (initdb refuses root): create it, or run as a normal user") from None


def _as_server_user(argv: list[str]) -> list[str]:
    if _server_account() is None:
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
    from engine.connections.postgres import find_pg_tool
    from engine.errors import ActionError

    try:
        initdb = find_pg_tool("initdb", prefer_path=False)
    except ActionError:
        raise LabError("PostgreSQL server programs (initdb, pg_ctl) not found in `pg_config --bindir`, "
                       "/usr/lib/postgresql/*/bin or PATH: install them (apt-get install postgresql)") from None
    return Path(initdb).parent


# --------------------------------------------------------------------------
# Processes: identify before signalling
# --------------------------------------------------------------------------

def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie still answers kill(0) but is gone for every practical purpose
    try:
        return " Z" not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:3]
    except OSError:
        return True


def _owned_pid(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive and its command line mentions ``marker`` (our path)."""
    return _pid_alive(pid) and marker in _cmdline(pid or 0)


def _terminate(pid: int, grace: float = 5.0) -> None:
    """SIGTERM ``pid``, then SIGKILL if it is still there after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.05)


def _wait_until(check, timeout: float, what: str, interval: float = 0.1):
    """Call ``check()`` until it returns something truthy; LabError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # not up yet: keep polling, report the last reason
            last_error = exc
        time.sleep(interval)
    reason = f": {last_error}" if last_error else ""
    raise LabError(f"timed out after {timeout:.0f} s waiting for {what}{reason}")


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# --------------------------------------------------------------------------
# PostgreSQL servers
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


def _connect(dsn: str):
    import psycopg

    return psycopg.connect(dsn, autocommit=True)


def _query_value(dsn: str, sql: str):
    with _connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


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


def _stop_postgres(bindir: Path | None, data_dir: Path, runtime: Path) -> bool:
    """Stop the server of ``data_dir`` if it runs; True if one was running."""
    pid = _postmaster_pid(data_dir)
    if not _owned_pid(pid, str(data_dir)):
        _release_orphaned_shared_memory(data_dir)
        return False
    if bindir and (bindir / "pg_ctl").exists():
        try:
            _run_server_tool([str(bindir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w",
                              "-t", "15", "stop"], f"stopping {data_dir}", cwd=runtime, timeout=20)
        except LabError:
            pass  # fall back to signals below
    if _pid_alive(pid):
        # SIGQUIT is PostgreSQL's immediate shutdown; SIGKILL would orphan shared memory
        os.kill(pid, signal.SIGQUIT)
        _wait_until(lambda: not _pid_alive(pid), 10, f"PostgreSQL {pid} to exit")
    return True


# --------------------------------------------------------------------------
# Seed data
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

    with _connect(admin_dsn) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            sql.Identifier(APP_ROLE), sql.Literal(password)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(DATABASE), sql.Identifier(APP_ROLE)))


def _seed_tables(runtime: Path, port: int) -> None:
    """(Re)create ``users`` and ``orders`` with their seed rows, owned by the erp role."""
    with _connect(_admin_dsn(runtime, port, DATABASE, APP_ROLE)) as conn:
        conn.execute(_SEED_SQL)


# --------------------------------------------------------------------------
# The HTTP app
# --------------------------------------------------------------------------

_APP_SOURCE = r'''
import http.server, json, pathlib, sys, time, urllib.parse
PORT, STATUS = int(sys.argv[1]), pathlib.Path(sys.argv[2])

def current():
    """(status code, delay seconds) from the status file: 'CODE [DELAY]'."""
    try:
        parts = STATUS.read_text().split()
        return int(parts[0]), float(parts[1]) if len(parts) > 1 else 0.0
    except (OSError, ValueError, IndexError):
        return 200, 0.0

def set_status(code, delay):
    tmp = STATUS.with_name(STATUS.name + ".tmp")
    tmp.write_text(f"{code} {delay}\n")
    tmp.replace(STATUS)

class Handler(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/health":
            code, delay = current()
            time.sleep(delay)
            self.reply(code, {"status": "ok" if code < 400 else "failing", "code": code})
        elif url.path == "/admin/status":
            self.admin(urllib.parse.parse_qs(url.query))
        elif url.path == "/":
            self.reply(200, {"service": "runbook-lab-app", "health": current()[0]})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def admin(self, query):
        if "code" in query:
            try:
                code = int(query["code"][0])
                delay = float(query.get("delay", ["0"])[0])
                if not 100 <= code <= 599 or delay < 0:
                    raise ValueError
            except ValueError:
                return self.reply(400, {"error": "code must be 100..599, delay >= 0"})
            set_status(code, delay)
        code, delay = current()
        self.reply(200, {"code": code, "delay": delay})

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
'''


def _http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


# Starts the app in its own session and exits at once, printing the app's PID:
# the app is then nobody's child here, so it never lingers as our zombie and
# outlives us when a test run is killed (the next lab_up stops it).
_LAUNCHER_SOURCE = r"""
import subprocess, sys
port, status_file, log, source = sys.argv[1:5]
with open(log, "ab") as out:
    app = subprocess.Popen([sys.executable, "-c", source, port, status_file], stdin=subprocess.DEVNULL,
                           stdout=out, stderr=out, start_new_session=True)
print(app.pid)
"""


def _start_app(lab_dir: Path, runtime: Path, port: int) -> dict:
    status_file = lab_dir / "app-status"
    status_file.write_text("200 0\n")
    log = lab_dir / "app.log"
    launched = subprocess.run([sys.executable, "-c", _LAUNCHER_SOURCE, str(port), str(status_file),
                               str(log), _APP_SOURCE], capture_output=True, text=True, cwd=lab_dir,
                              timeout=STARTUP_TIMEOUT, stdin=subprocess.DEVNULL)
    if launched.returncode != 0:
        raise LabError(f"could not launch the lab app: {launched.stderr.strip()[-300:]}")
    pid = int(launched.stdout.strip())
    (runtime / "app.pid").write_text(f"{pid}\n")
    url = f"http://127.0.0.1:{port}"
    _wait_until(lambda: _http_status(url + "/health") == 200 or not _pid_alive(pid),
                STARTUP_TIMEOUT, f"the lab app on {url}")
    if not _pid_alive(pid):
        raise LabError(f"the lab app exited at start; see {log}")
    return {"name": "app", "port": port, "pid": pid, "url": url, "health_url": url + "/health",
            "admin_url": url + "/admin/status", "status_file": str(status_file), "log": str(log)}


def _stop_app(pid: int | None, status_file: str) -> bool:
    if not _owned_pid(pid, status_file):
        return False
    _terminate(pid)  # type: ignore[arg-type]
    return True


# --------------------------------------------------------------------------
# Replication readiness
# --------------------------------------------------------------------------

def _replica_streaming(primary_admin_dsn: str) -> bool:
    return bool(_query_value(primary_admin_dsn,
                             "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"))


def wait_for_replica(state_or_dir: dict | Path | str, timeout: float = 30.0) -> None:
    """Block until the lab's replica has replayed everything the primary has written."""
    state = state_or_dir if isinstance(state_or_dir, dict) else _require_state(Path(state_or_dir))
    primary, replica = state["primary"]["admin_dsn"], state["replica"]["admin_dsn"]
    target = _query_value(primary, "SELECT pg_current_wal_lsn()::text")

    def caught_up() -> bool:
        return bool(_query_value(replica, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn"))

    _wait_until(caught_up, timeout, "the replica to catch up")


# --------------------------------------------------------------------------
# Inventory
# --------------------------------------------------------------------------

def _app_dsn(port: int, passfile: Path) -> str:
    return f"postgresql://{APP_ROLE}@127.0.0.1:{port}/{DATABASE}?passfile={quote(str(passfile), safe='/')}"


def _write_passfile(lab_dir: Path, password: str) -> Path:
    passfile = lab_dir / "pgpass"
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"127.0.0.1:*:*:{APP_ROLE}:{password}\n")
    return passfile


def _database_target(server: dict, state: dict) -> dict:
    return {"dsn": server["dsn"], "host": "127.0.0.1", "port": server["port"],
            "database": DATABASE, "user": APP_ROLE, "role": server["role"],
            "data_dir": server["data_dir"], "admin_dsn": server["admin_dsn"],
            "os_user": state["os_user"], "pg_bin_dir": state["pg_bin_dir"]}


def _inventory(state: dict) -> dict:
    app = state["app"]
    return {
        "vars": {"lab_dir": state["dir"], "backup_dir": state["backup_dir"],
                 "pg_bin_dir": state["pg_bin_dir"]},
        "groups": {"databases": {"targets": {
            "primary_db": _database_target(state["primary"], state),
            "replica_db": _database_target(state["replica"], state)}}},
        "targets": {"app": {key: app[key] for key in
                            ("url", "health_url", "admin_url", "status_file")}},
    }


def _write_inventory(lab_dir: Path, state: dict) -> Path:
    import yaml

    inventory = _inventory(state)
    for name, part_state in (state.get("parts") or {}).items():
        for key, value in load_part(name).inventory(part_state).items():
            inventory.setdefault(key, {}).update(value)
    path = lab_dir / "inventory.yaml"
    header = ("# Written by `runbook lab up`; rewritten on every start. Ports change each time.\n"
              "# DSNs carry no password: libpq reads it from the passfile they name.\n")
    path.write_text(header + yaml.safe_dump(inventory, sort_keys=False, width=200))
    return path


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------

def _prepare_dirs(lab_dir: Path) -> Path:
    """Create DIR and a fresh runtime dir the server user owns; return the runtime dir."""
    lab_dir.mkdir(parents=True, exist_ok=True)
    (lab_dir / "backups").mkdir(exist_ok=True)
    runtime = runtime_dir_for(lab_dir)
    runtime.mkdir(mode=0o700, parents=True)
    account = _server_account()
    if account is not None:
        os.chown(runtime, account.pw_uid, account.pw_gid)
    return runtime


def _refuse_foreign_dir(lab_dir: Path) -> None:
    if lab_dir.exists() and not lab_dir.is_dir():
        raise LabError(f"{lab_dir} exists and is not a directory")
    if lab_dir.is_dir() and any(lab_dir.iterdir()) and not _is_lab_dir(lab_dir):
        raise LabError(f"{lab_dir} is not empty and holds no {STATE_FILE}: not a lab dir, "
                       f"refusing to use (and later delete) it")


def lab_up(lab_dir: Path | str = DEFAULT_LAB_DIR, parts: list[str] = (),
           progress=lambda message: None) -> dict:
    """Start the lab in ``lab_dir`` and return its description (see ``lab.json``).

    ``parts`` adds optional services (``engine.lab.parts``) after the PostgreSQL
    primary, replica and app. A lab already there — running or left behind by a
    killed process — is stopped and wiped first, so the lab always starts from
    the seed data.
    """
    lab_dir = Path(lab_dir).resolve()
    _refuse_foreign_dir(lab_dir)
    started = time.monotonic()
    stale = _stop_and_remove(lab_dir)
    bindir = server_bin_dir()
    runtime = _prepare_dirs(lab_dir)
    state = _initial_state(lab_dir, runtime, bindir)
    _save_state(lab_dir, state)  # first, so a crash from here on leaves a lab we can clean up
    try:
        _start_services(lab_dir, runtime, bindir, state)
        _start_parts(lab_dir, runtime, state, parts, progress)
    except BaseException:
        _stop_and_remove(lab_dir)
        raise
    state["started_in"] = round(time.monotonic() - started, 2)
    state["cleaned_stale"] = bool(stale["stopped"])
    _save_state(lab_dir, state)
    return state


def _initial_state(lab_dir: Path, runtime: Path, bindir: Path) -> dict:
    account = _server_account()
    return {"dir": str(lab_dir), "runtime_dir": str(runtime), "pg_bin_dir": str(bindir),
            "os_user": account.pw_name if account else pwd.getpwuid(os.geteuid()).pw_name,
            "database": DATABASE, "user": APP_ROLE, "backup_dir": str(lab_dir / "backups"),
            "inventory": str(lab_dir / "inventory.yaml"), "seed": dict(SEED_COUNTS)}


def _start_services(lab_dir: Path, runtime: Path, bindir: Path, state: dict) -> None:
    primary_port, replica_port, app_port = _free_ports(3)
    password = secrets.token_urlsafe(18)
    passfile = _write_passfile(lab_dir, password)
    state["passfile"] = str(passfile)

    state["primary"] = _start_primary(bindir, runtime, primary_port)
    _save_state(lab_dir, state)
    _create_app_database(state["primary"]["admin_dsn"], password)
    _seed_tables(runtime, primary_port)

    state["replica"] = _start_replica(bindir, runtime, primary_port, replica_port)
    _save_state(lab_dir, state)
    for server in (state["primary"], state["replica"]):
        server["dsn"] = _app_dsn(server["port"], passfile)
    _wait_until(lambda: _replica_streaming(state["primary"]["admin_dsn"]), STARTUP_TIMEOUT,
                "the replica to stream from the primary")

    state["app"] = _start_app(lab_dir, runtime, app_port)
    _save_state(lab_dir, state)
    _write_inventory(lab_dir, state)


def _start_parts(lab_dir: Path, runtime: Path, state: dict, parts, progress) -> None:
    state["parts"] = {}
    for name in parts:
        def save(part_state: dict, name: str = name) -> None:
            state["parts"][name] = part_state
            _save_state(lab_dir, state)

        progress(f"starting {name}")
        save(load_part(name).up(LabContext(lab_dir, runtime, state, save, progress)))
    _write_inventory(lab_dir, state)


def _stop_parts(lab_dir: Path, runtime: Path, state: dict) -> list[str]:
    """Stop the optional parts, newest first; parts without a record clean up leftovers."""
    from engine.lab.parts import PARTS

    recorded = state.get("parts") or {}
    stopped = []
    for name in reversed(PARTS):
        try:
            part = load_part(name)
        except LabError:
            continue  # not in this version: nothing of it can be running
        lab = LabContext(lab_dir, runtime, state, lambda _state: None)
        stopped += part.down(lab, recorded.get(name))
    return stopped


def _stop_and_remove(lab_dir: Path) -> dict:
    """Stop whatever runs for the lab at ``lab_dir`` and delete its files."""
    state = _load_state(lab_dir) or {}
    bindir = Path(state["pg_bin_dir"]) if state.get("pg_bin_dir") else _bindir_or_none()
    runtimes = _runtime_dirs(lab_dir, state)
    stopped = []
    for runtime in runtimes:
        stopped += _stop_parts(lab_dir, runtime, state)
        # the replica first: stopping the primary first makes it retry and log errors
        for name, sub in (("replica_db", "replica"), ("primary_db", "primary")):
            if _stop_postgres(bindir, runtime / sub, runtime):
                stopped.append(name)
        if _stop_app(_app_pid(state, runtime), str(lab_dir / "app-status")):
            stopped.append("app")
    removed = [str(p) for p in (*runtimes, lab_dir) if p.exists()]
    for runtime in runtimes:
        shutil.rmtree(runtime, ignore_errors=True)
    if _is_lab_dir(lab_dir) or (lab_dir.is_dir() and not any(lab_dir.iterdir())):
        shutil.rmtree(lab_dir, ignore_errors=True)
    return {"dir": str(lab_dir), "stopped": stopped, "removed": removed}


def _runtime_dirs(lab_dir: Path, state: dict) -> list[Path]:
    """The lab's runtime dir from its state, else every place it may have been put."""
    if state.get("runtime_dir"):
        return [Path(state["runtime_dir"])]
    name = runtime_dir_for(lab_dir).name
    bases = [_runtime_base(), Path("/dev/shm"), Path("/tmp")]
    candidates = dict.fromkeys(base / name for base in bases)
    return [path for path in candidates if path.exists()]


def _bindir_or_none() -> Path | None:
    try:
        return server_bin_dir()
    except LabError:
        return None


def _app_pid(state: dict, runtime: Path) -> int | None:
    pid = (state.get("app") or {}).get("pid")
    if pid:
        return int(pid)
    try:
        return int((runtime / "app.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def lab_down(lab_dir: Path | str = DEFAULT_LAB_DIR) -> dict:
    """Stop every service of the lab in ``lab_dir`` and remove its files.

    Returns ``{dir, stopped: [names], removed: [paths]}``; a missing lab is not an error.
    """
    lab_dir = Path(lab_dir).resolve()
    if lab_dir.exists() and not _is_lab_dir(lab_dir) and any(lab_dir.iterdir()):
        raise LabError(f"{lab_dir} holds no {STATE_FILE}: not a lab dir, not removing it")
    return _stop_and_remove(lab_dir)


def _require_state(lab_dir: Path) -> dict:
    state = _load_state(lab_dir.resolve())
    if state is None:
        raise LabError(f"no lab in {lab_dir} (run `runbook lab up --dir {lab_dir}`)")
    return state


def _postgres_status(server: dict) -> dict:
    data_dir = Path(server["data_dir"])
    pid = _postmaster_pid(data_dir)
    running = _owned_pid(pid, str(data_dir))
    status = {"running": running, "pid": pid if running else None, "port": server["port"],
              "dsn": server.get("dsn"), "role": None}
    if running:
        try:
            in_recovery = _query_value(server["admin_dsn"], "SELECT pg_is_in_recovery()")
            status["role"] = "replica" if in_recovery else "primary"
        except Exception as exc:  # running but not accepting connections (starting, shutting down)
            status["error"] = str(exc).strip().splitlines()[0]
    return status


def _app_status(app: dict) -> dict:
    running = _owned_pid(app.get("pid"), app["status_file"])
    status = {"running": running, "pid": app["pid"] if running else None, "port": app["port"],
              "url": app["url"], "health": None}
    if running:
        try:
            status["health"] = _http_status(app["health_url"])
        except OSError as exc:
            status["error"] = str(exc)
    return status


def lab_status(lab_dir: Path | str = DEFAULT_LAB_DIR) -> dict:
    """What runs in the lab at ``lab_dir``.

    ``{dir, exists, runtime_dir, inventory, services: {primary_db, replica_db,
    app: {running, pid, port, ...}}}``; PostgreSQL entries carry their current
    ``role`` (a promoted replica says ``primary``), the app its ``health`` code.
    """
    lab_dir = Path(lab_dir).resolve()
    state = _load_state(lab_dir)
    if state is None:
        return {"dir": str(lab_dir), "exists": False, "services": {}}
    services = {}
    for key in ("primary", "replica"):
        if key in state:
            services[state[key]["name"]] = _postgres_status(state[key])
    if "app" in state:
        services["app"] = _app_status(state["app"])
    for name, part_state in (state.get("parts") or {}).items():
        services.update(load_part(name).status(part_state))
    return {"dir": str(lab_dir), "exists": True, "runtime_dir": state["runtime_dir"],
            "inventory": state["inventory"], "services": services}


def lab_reset(lab_dir: Path | str = DEFAULT_LAB_DIR, timeout: float = 30.0) -> dict:
    """Put the seed data back (drop and recreate ``users`` and ``orders`` on the primary)
    and wait for the replica to replay it. Topology changes (a promoted replica)
    need ``lab_up`` again."""
    state = _require_state(Path(lab_dir))
    _seed_tables(Path(state["runtime_dir"]), state["primary"]["port"])
    if _query_value(state["replica"]["admin_dsn"], "SELECT pg_is_in_recovery()"):
        wait_for_replica(state, timeout)
    return {"dir": state["dir"], "seed": dict(SEED_COUNTS)}
