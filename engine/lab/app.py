"""The lab's HTTP app: a service whose health you switch for failure drills.

``GET /health`` answers with the status code in the status file (``CODE
[DELAY]``, 200 by default), after DELAY seconds; ``GET /admin/status?code=503``
(optionally ``&delay=2``) switches it, as does writing ``503`` into the file.

It is served by ``python -m engine.lab.app PORT STATUS_FILE``; the lab starts,
checks and stops it with the functions at the end of this module.
"""
from __future__ import annotations

import http.server
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from engine.errors import LabError
from engine.lab.processes import STARTUP_TIMEOUT, launch_detached, owned_pid, pid_alive, terminate, wait_until

__all__ = ["serve", "start_app", "stop_app", "app_pid", "app_status", "http_status"]


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


class Handler(http.server.BaseHTTPRequestHandler):
    status_file: Path  # set by serve()

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


def serve(port: int, status_file: Path) -> None:
    """Serve the app on 127.0.0.1:``port`` until killed."""
    handler = type("LabAppHandler", (Handler,), {"status_file": status_file})
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


def start_app(lab_dir: Path, runtime: Path, port: int) -> dict:
    """Start the app for the lab in ``lab_dir``; its record for ``lab.json``."""
    status_file = lab_dir / "app-status"
    status_file.write_text("200 0\n")
    log = lab_dir / "app.log"
    pid = launch_detached([sys.executable, "-m", "engine.lab.app", str(port), str(status_file)],
                          log, "the lab app", cwd=lab_dir)
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
    serve(int(sys.argv[1]), Path(sys.argv[2]))
