"""The lab's processes: launched detached, identified before signalled, waited for.

PIDs are only signalled after ``/proc/PID/cmdline`` shows they belong to the
lab (a path of its own in their command line), so a recycled PID is never hit.

Run as ``python -m engine.lab.processes LOG ARGV...`` this module is the
launcher of :func:`launch_detached`.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine.errors import LabError

__all__ = ["STARTUP_TIMEOUT", "cmdline", "pid_alive", "owned_pid", "terminate", "wait_until",
           "free_ports", "engine_env", "launch_detached"]

#: seconds a lab service may take to start
STARTUP_TIMEOUT = 30.0


def cmdline(pid: int) -> str:
    """The command line of ``pid`` ('' when it is gone or unreadable)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pid_alive(pid: int | None) -> bool:
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


def owned_pid(pid: int | None, marker: str) -> bool:
    """True when ``pid`` is alive and its command line mentions ``marker`` (our path)."""
    return pid_alive(pid) and marker in cmdline(pid or 0)


def terminate(pid: int, grace: float = 5.0) -> None:
    """SIGTERM ``pid``, then SIGKILL if it is still there after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def wait_until(check, timeout: float, what: str, interval: float = 0.1):
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


def free_ports(count: int) -> list[int]:
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


def engine_env() -> dict[str, str]:
    """The environment with this engine first on ``PYTHONPATH``, so that
    ``python -m engine.lab...`` runs the same code as the caller, wherever it is installed."""
    import engine

    env = dict(os.environ)
    root = str(Path(engine.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def launch_detached(argv: list[str], log: Path, what: str, *, cwd: Path | None = None) -> int:
    """Start ``argv`` in a session of its own, its output appended to ``log``; its PID.

    A short-lived launcher starts it and exits at once: the service is then
    nobody's child here, so it never lingers as our zombie, and it outlives us
    when a test run is killed (the next ``lab_up`` stops it).
    """
    launched = subprocess.run([sys.executable, "-m", "engine.lab.processes", str(log), *argv],
                              capture_output=True, text=True, cwd=cwd, env=engine_env(),
                              timeout=STARTUP_TIMEOUT, stdin=subprocess.DEVNULL)
    if launched.returncode != 0:
        raise LabError(f"could not launch {what}: {launched.stderr.strip()[-300:]}")
    return int(launched.stdout.strip())


def _launch(log: str, argv: list[str]) -> None:
    with open(log, "ab") as out:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 start_new_session=True)
    print(child.pid)


if __name__ == "__main__":
    _launch(sys.argv[1], sys.argv[2:])
