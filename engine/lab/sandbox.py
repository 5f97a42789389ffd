"""The lab: a local rehearsal sandbox of real services for drills and tests.

``lab_up(DIR)`` starts, from the machine's own PostgreSQL binaries:

- ``primary_db`` — a PostgreSQL primary with database ``erp`` (owned by the
  role ``erp``, a superuser like a DR operator's role) seeded with ``users``
  and ``orders``;
- ``replica_db`` — a streaming replica of it (``pg_basebackup -R -X stream``);
- ``app`` — a tiny HTTP service whose ``/health`` answers with a status code
  you switch for failure drills: ``GET /admin/status?code=503`` (optionally
  ``&delay=2`` seconds), or write ``503`` into ``DIR/app-status``.

then the optional parts asked for (``engine.lab.parts``), and writes
``DIR/inventory.yaml`` for ``runbook run -i``. This module orchestrates; the
servers are ``engine.lab.postgres``, the app ``engine.lab.app``, process
handling ``engine.lab.processes``.

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

import json
import os
import pwd
import shutil
import time
from pathlib import Path

from engine.checksums import sha256_text
from engine.errors import LabError
from engine.lab import processes
from engine.lab.app import app_pid, app_status, start_app, stop_app, write_app_config
from engine.lab.parts import LabContext, load_part
from engine.lab.postgres import (APP_ROLE, DATABASE, SEED_COUNTS, database_target, query_value,
                                 seed_tables, server_account, server_bin_dir, server_status,
                                 start_servers, stop_server, wait_for_replay)

__all__ = ["LabError", "lab_up", "lab_down", "lab_status", "lab_reset", "wait_for_replica",
           "runtime_dir_for", "server_bin_dir", "DEFAULT_LAB_DIR", "SEED_COUNTS"]

DEFAULT_LAB_DIR = Path(".runbook/lab")
STATE_FILE = "lab.json"
MIN_SHM_BYTES = 1 << 30

# The names parts written before engine.lab.processes existed import from here.
_free_ports, _pid_alive, _wait_until = processes.free_ports, processes.pid_alive, processes.wait_until
_owned_pid, _terminate = processes.owned_pid, processes.terminate


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
    digest = sha256_text(str(Path(lab_dir).resolve()))[:12]
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
# Inventory
# --------------------------------------------------------------------------

def _inventory(state: dict) -> dict:
    app = state["app"]
    return {
        "vars": {"lab_dir": state["dir"], "backup_dir": state["backup_dir"],
                 "pg_bin_dir": state["pg_bin_dir"], "app_config_file": state["app_config_file"]},
        "groups": {"databases": {"targets": {
            "primary_db": database_target(state["primary"], state),
            "replica_db": database_target(state["replica"], state)}}},
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
    account = server_account()
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
    account = server_account()
    return {"dir": str(lab_dir), "runtime_dir": str(runtime), "pg_bin_dir": str(bindir),
            "os_user": account.pw_name if account else pwd.getpwuid(os.geteuid()).pw_name,
            "database": DATABASE, "user": APP_ROLE, "backup_dir": str(lab_dir / "backups"),
            "inventory": str(lab_dir / "inventory.yaml"), "seed": dict(SEED_COUNTS)}


def _start_services(lab_dir: Path, runtime: Path, bindir: Path, state: dict) -> None:
    primary_port, replica_port, app_port = processes.free_ports(3)
    start_servers(lab_dir, runtime, bindir, state, (primary_port, replica_port),
                  save=lambda: _save_state(lab_dir, state))
    state["app_config_file"] = write_app_config(lab_dir, state["primary"]["dsn"])
    state["app"] = start_app(lab_dir, runtime, app_port, Path(state["app_config_file"]))
    # A healthy lab is like a live system: the app has written, and the replica has it.
    processes.wait_until(lambda: _has_heartbeat(state["primary"]), processes.STARTUP_TIMEOUT,
                         "the lab app's first write")
    wait_for_replica(state)
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
            if stop_server(bindir, runtime / sub, runtime):
                stopped.append(name)
        if stop_app(app_pid(state, runtime), str(lab_dir / "app-status")):
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


def lab_down(lab_dir: Path | str = DEFAULT_LAB_DIR) -> dict:
    """Stop every service of the lab in ``lab_dir`` and remove its files.

    Returns ``{dir, stopped: [names], removed: [paths]}``; a missing lab is not an error.
    """
    lab_dir = Path(lab_dir).resolve()
    if lab_dir.exists() and not _is_lab_dir(lab_dir) and any(lab_dir.iterdir()):
        raise LabError(f"{lab_dir} holds no {STATE_FILE}: not a lab dir, not removing it")
    return _stop_and_remove(lab_dir)


def _has_heartbeat(server: dict) -> bool:
    try:
        return bool(query_value(server["admin_dsn"].replace("dbname=postgres", "dbname=erp"),
                                "SELECT count(*) FROM lab_heartbeat"))
    except Exception:  # the table is not there yet
        return False


def lab_state(lab_dir: Path | str) -> dict:
    """The record (``lab.json``) of the running lab at ``lab_dir``."""
    return _require_state(Path(lab_dir))


def _require_state(lab_dir: Path) -> dict:
    state = _load_state(lab_dir.resolve())
    if state is None:
        raise LabError(f"no lab in {lab_dir} (run `runbook lab up --dir {lab_dir}`)")
    return state


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
            services[state[key]["name"]] = server_status(state[key])
    if "app" in state:
        services["app"] = app_status(state["app"])
    for name, part_state in (state.get("parts") or {}).items():
        services.update(load_part(name).status(part_state))
    return {"dir": str(lab_dir), "exists": True, "runtime_dir": state["runtime_dir"],
            "inventory": state["inventory"], "services": services}


def lab_reset(lab_dir: Path | str = DEFAULT_LAB_DIR, timeout: float = 30.0) -> dict:
    """Put the seed data back (drop and recreate ``users`` and ``orders`` on the primary)
    and wait for the replica to replay it. Topology changes (a promoted replica)
    need ``lab_up`` again."""
    state = _require_state(Path(lab_dir))
    seed_tables(Path(state["runtime_dir"]), state["primary"]["port"])
    if query_value(state["replica"]["admin_dsn"], "SELECT pg_is_in_recovery()"):
        wait_for_replica(state, timeout)
    return {"dir": state["dir"], "seed": dict(SEED_COUNTS)}


def wait_for_replica(state_or_dir: dict | Path | str, timeout: float = 30.0) -> None:
    """Block until the lab's replica has replayed everything the primary has written."""
    state = state_or_dir if isinstance(state_or_dir, dict) else _require_state(Path(state_or_dir))
    wait_for_replay(state["primary"]["admin_dsn"], state["replica"]["admin_dsn"], timeout)
