"""``runbook serve``: a read-only live view of the runs, for the incident channel.

Standard library only (``http.server``). Pages are rendered on the server (the same
Jinja2 templates and timeline as the report) and kept current with server-sent
events: the server re-reads the store about once a second and pushes the page's new
body when the journal grew. Only GET: nothing can be changed from the page —
approvals stay signed on the command line.
"""
from __future__ import annotations

import json
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from engine.errors import EngineError
from engine.reports.live import live_state
from engine.reports.render import render_template

POLL = 1.0          # seconds between looks at the store
HEARTBEAT = 15.0    # an SSE comment this often keeps proxies from closing the stream


class LiveServer:
    def __init__(self, store, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.store = store
        self._lock = threading.Lock()   # one store call at a time (a PostgreSQL store
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))  # shares a connection)
        self.httpd.daemon_threads = True
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        self.stopping.set()
        self.httpd.server_close()

    # --- views (each returns (version, html) so the SSE loop can tell a change) ---
    def runs_view(self) -> tuple[str, str]:
        with self._lock:
            runs = [r.as_dict() for r in self.store.list_runs()][::-1]
        version = json.dumps([(r["run_id"], r["status"], r["duration"]) for r in runs])
        return version, render_template("live_runs.html.j2", runs=runs)

    def run_view(self, run_id: str) -> tuple[str, str]:
        with self._lock:
            summary = self.store.summary(run_id)
            events = self.store.events(run_id)
        state = live_state(summary, events)
        version = f"{state['seq']}:{state['status']}"
        return version, render_template("live_run.html.j2", live=state)


def _handler(server: LiveServer):
    class Handler(_LiveHandler):
        live = server
    return Handler


class _LiveHandler(BaseHTTPRequestHandler):
    live: LiveServer
    server_version = "runbook-serve"

    def log_message(self, format, *args) -> None:  # noqa: A002 - the stdlib's name
        pass  # quiet: the terminal shows only the serving line

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path = unquote(self.path.split("?")[0])
        try:
            if path == "/":
                self._page("Runs", "/events/runs", self.live.runs_view)
            elif path.startswith("/run/"):
                run_id = path[len("/run/"):]
                self._page(f"Run {run_id}", f"/events/run/{run_id}",
                           lambda: self.live.run_view(run_id))
            elif path == "/events/runs":
                self._stream(self.live.runs_view)
            elif path.startswith("/events/run/"):
                run_id = path[len("/events/run/"):]
                self._stream(lambda: self.live.run_view(run_id))
            elif path == "/healthz":
                self._send(HTTPStatus.OK, "ok\n", "text/plain")
            else:
                self._send(HTTPStatus.NOT_FOUND, "not found\n", "text/plain")
        except EngineError as exc:
            self._send(HTTPStatus.NOT_FOUND, exc.render() + "\n", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _refuse(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, "read-only: approvals are signed with "
                   "'runbook approve' on the command line\n", "text/plain")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _page(self, title: str, stream: str, view) -> None:
        version, body = view()
        page = render_template("live_page.html.j2", title=title, stream=stream, body=body,
                               version=version)
        self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")

    def _send(self, status, text: str, kind: str) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, view) -> None:
        """Server-sent events: the page's new body each time it changes."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        sent, quiet_since = None, time.monotonic()
        while not self.live.stopping.is_set():
            version, body = view()
            if version != sent:
                payload = json.dumps({"version": version, "html": body})
                self.wfile.write(f"data: {payload}\n\n".encode("utf-8"))
                sent, quiet_since = version, time.monotonic()
            elif time.monotonic() - quiet_since > HEARTBEAT:
                self.wfile.write(b": still here\n\n")
                quiet_since = time.monotonic()
            self.wfile.flush()
            self.live.stopping.wait(POLL)
