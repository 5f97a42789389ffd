"""The lab's HTTP app: a small service that depends on its database, like the real ones.

- It reads ``DATABASE_URL`` from its configuration file (``app-database.env`` in the lab
  dir: the file a failover re-points), every time it is asked.
- ``GET /health`` answers 503 when that database is not a writable primary (down, or a
  replica still in recovery), else the status code in the status file (``CODE [DELAY]``,
  200 by default) after DELAY seconds: ``GET /admin/status?code=503`` (optionally
  ``&delay=2``) switches it for failure drills, as does writing ``503`` into the file.
- Like a real application it writes: a heartbeat row every few seconds into the database
  it is configured for, so a healthy lab's replica always holds a recent transaction.

It is served by ``python -m engine.lab.app PORT STATUS_FILE CONFIG_FILE``; the lab starts,
checks and stops it with the functions at the end of this module.
"""
from __future__ import annotations

import http.server
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from engine.errors import LabError
from engine.lab.processes import STARTUP_TIMEOUT, launch_detached, owned_pid, pid_alive, terminate, wait_until

__all__ = ["serve", "start_app", "stop_app", "app_pid", "app_status", "http_status",
           "write_app_config", "database_url"]


# --------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------

def current(status_file: Path) -> tuple[int, float]:
    """(status code, delay seconds) from the status file: 'CODE [DELAY]'."""
    try:
        parts = status_file.read_text().split()
        return int(parts[0]), float(parts[1]) if len(parts) > 1 else 0.0
    except (OSError, ValueError, IndexError):
        return 200, 0.0


def set_status(status_file: Path, code: int, delay: float) -> None:
    tmp = status_file.with_name(status_file.name + ".tmp")
    tmp.write_text(f"{code} {delay}\n")
    tmp.replace(status_file)


HEARTBEAT_SECONDS = 5.0
_HEARTBEAT_SQL = ("CREATE TABLE IF NOT EXISTS lab_heartbeat (id int PRIMARY KEY, at timestamptz);"
                  "INSERT INTO lab_heartbeat VALUES (1, now()) "
                  "ON CONFLICT (id) DO UPDATE SET at = excluded.at")


def database_url(config_file: Path) -> str | None:
    """``DATABASE_URL`` from the configuration file (``KEY=VALUE`` lines)."""
    try:
        lines = config_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "DATABASE_URL":
            return value.strip()
    return None


def database_problem(config_file: Path) -> str | None:
    """Why the configured database cannot serve the app (None: a writable primary)."""
    url = database_url(config_file)
    if not url:
        return f"no DATABASE_URL in {config_file}"
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
            if conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                return "the database is a replica in recovery (read-only)"
    except Exception as exc:  # the reason is the answer: the app is unhealthy
        return f"cannot use the database: {type(exc).__name__}"
    return None


def heartbeat(config_file: Path, stop: threading.Event) -> None:
    """Write like an application does, into whichever database it is configured for:
    once at start, then every few seconds."""
    while True:
        beat(config_file)
        if stop.wait(HEARTBEAT_SECONDS):
            return


def beat(config_file: Path) -> bool:
    """One heartbeat row; False when the configured database cannot take it."""
    url = database_url(config_file)
    if not url:
        return False
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
            conn.execute(_HEARTBEAT_SQL)
    except Exception:  # a failed or read-only database: /health says so
        return False
    return True


def write_app_config(lab_dir: Path, dsn: str) -> str:
    """The app's configuration file, pointing at ``dsn`` (the lab's primary at start)."""
    path = lab_dir / "app-database.env"
    path.write_text(f"DATABASE_URL={dsn}\n")
    return str(path)


class Handler(http.server.BaseHTTPRequestHandler):
    status_file: Path  # set by serve()
    config_file: Path

    def reply(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/health":
            problem = database_problem(self.config_file)
            if problem:
                return self.reply(503, {"status": "failing", "code": 503, "database": problem})
            code, delay = current(self.status_file)
            time.sleep(delay)
            self.reply(code, {"status": "ok" if code < 400 else "failing", "code": code})
        elif url.path == "/admin/status":
            self.admin(urllib.parse.parse_qs(url.query))
        elif url.path == "/":
            self.reply(200, {"service": "runbook-lab-app", "health": current(self.status_file)[0]})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def admin(self, query: dict) -> None:
        if "code" in query:
            try:
                code = int(query["code"][0])
                delay = float(query.get("delay", ["0"])[0])
                if not 100 <= code <= 599 or delay < 0:
                    raise ValueError
            except ValueError:
                return self.reply(400, {"error": "code must be 100..599, delay >= 0"})
            set_status(self.status_file, code, delay)
        code, delay = current(self.status_file)
        self.reply(200, {"code": code, "delay": delay})

    def log_message(self, *args) -> None:
        pass


def serve(port: int, status_file: Path, config_file: Path) -> None:
    """Serve the app on 127.0.0.1:``port`` (and write heartbeats) until killed."""
    handler = type("LabAppHandler", (Handler,), {"status_file": status_file,
                                                 "config_file": config_file})
    threading.Thread(target=heartbeat, args=(config_file, threading.Event()),
                     daemon=True).start()
    http.server.ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


# --------------------------------------------------------------------------
# Starting, checking and stopping it
# --------------------------------------------------------------------------

def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def start_app(lab_dir: Path, runtime: Path, port: int, config_file: Path) -> dict:
    """Start the app for the lab in ``lab_dir``; its record for ``lab.json``."""
    status_file = lab_dir / "app-status"
    status_file.write_text("200 0\n")
    log = lab_dir / "app.log"
    pid = launch_detached([sys.executable, "-m", "engine.lab.app", str(port), str(status_file),
                           str(config_file)], log, "the lab app", cwd=lab_dir)
    (runtime / "app.pid").write_text(f"{pid}\n")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_status(url + "/health") == 200 or not pid_alive(pid),
               STARTUP_TIMEOUT, f"the lab app on {url}")
    if not pid_alive(pid):
        raise LabError(f"the lab app exited at start; see {log}")
    return {"name": "app", "port": port, "pid": pid, "url": url, "health_url": url + "/health",
            "admin_url": url + "/admin/status", "status_file": str(status_file), "log": str(log)}


def stop_app(pid: int | None, status_file: str) -> bool:
    """Stop the app if ``pid`` is the one serving ``status_file``; True if it ran."""
    if not owned_pid(pid, status_file):
        return False
    terminate(pid)  # type: ignore[arg-type]
    return True


def app_pid(state: dict, runtime: Path) -> int | None:
    """The app's PID from the lab's record, else from the runtime dir."""
    pid = (state.get("app") or {}).get("pid")
    if pid:
        return int(pid)
    try:
        return int((runtime / "app.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def app_status(app: dict) -> dict:
    running = owned_pid(app.get("pid"), app["status_file"])
    status = {"running": running, "pid": app["pid"] if running else None, "port": app["port"],
              "url": app["url"], "health": None}
    if running:
        try:
            status["health"] = http_status(app["health_url"])
        except OSError as exc:
            status["error"] = str(exc)
    return status


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
