"""The lab cluster's processes: started in sessions of their own, recorded in
``pids.json``, identified by pid *and* start time before they are signalled
(pids get reused), terminated as process groups. Stdlib only.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["spawn_process", "terminate_groups", "is_ours", "alive", "read_pids", "read_json",
           "write_json", "write_private", "log_tail"]

STOP_GRACE = 3.0
ENGINE_ROOT = Path(__file__).resolve().parents[2]

# Popen objects of processes this Python process started, so that they are
# reaped (no zombies, no ResourceWarning) when they are stopped.
_CHILDREN: dict[int, subprocess.Popen] = {}


def spawn_process(workdir: Path, name: str, argv: list[str]) -> int:
    """Start one process of the cluster in its own session, its output in
    ``<name>.log``, and record it in ``pids.json`` so ``stop_cluster`` ends it.
    ``python -m engine...`` finds this engine (PYTHONPATH); returns the pid."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ENGINE_ROOT), env.get("PYTHONPATH")) if p)
    with open(workdir / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=workdir, env=env,
        )
    _CHILDREN[proc.pid] = proc
    pids = read_pids(workdir)
    pids[name] = {"pid": proc.pid, "start": start_time(proc.pid)}
    write_json(workdir / "pids.json", pids)
    return proc.pid


def terminate_groups(groups: list[int]) -> None:
    """SIGTERM the process groups, SIGKILL those still alive after STOP_GRACE."""
    signal_groups(groups, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while any(alive(pid) for pid in groups) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed = [pid for pid in groups if alive(pid)]
    signal_groups(killed, signal.SIGKILL)
    for pid in killed:
        proc = _CHILDREN.pop(pid, None)
        if proc is not None:
            proc.wait()  # quick: SIGKILL cannot be caught


def signal_groups(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def is_ours(entry: dict) -> bool:
    """Alive and still the process we started (pids get reused)."""
    return alive(entry["pid"]) and start_time(entry["pid"]) == entry.get("start")


def alive(pid: int) -> bool:
    """True for a running process. Our own children count until reaped (a
    Go process is a zombie leader while its threads still exit); for others
    a zombie counts as dead."""
    proc = _CHILDREN.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def start_time(pid: int) -> int | None:
    """The process start time in clock ticks since boot (/proc/pid/stat #22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[19])


def read_pids(workdir: Path) -> dict[str, dict]:
    return read_json(workdir / "pids.json")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_json(path: Path, data: dict) -> None:
    write_private(path, json.dumps(data, indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    """Write atomically, readable by the owner only (tokens live here)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def log_tail(workdir: Path, name: str, lines: int = 8) -> str:
    try:
        text = (workdir / f"{name}.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text.splitlines()[-lines:])
