"""Shared helpers for the `runbook run` tests: write a runbook, run it (as a real
`python -m engine` subprocess or in-process through ``engine.run.start``), read
its journal, serve HTTP on 127.0.0.1 and tell whether a process is alive.

Imported as ``helpers.run`` (pyproject puts tests/ on the path).
"""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "run"


def write_runbook(directory: Path, text: str, name: str = "runbook.yaml") -> Path:
    path = Path(directory) / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# --- the CLI as a real subprocess ---

@dataclass
class Cli:
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def events(self) -> list[dict]:
        """``--output json``: every stdout line parsed (fails the test if one does not parse)."""
        return [json.loads(line) for line in self.stdout.splitlines()]


def cli_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.pop("RUNBOOK_STATE_DIR", None)
    env.pop("RUNBOOK_STATE_URL", None)
    env.setdefault("RUNBOOK_OPERATOR", "tester")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    for key, value in (extra or {}).items():  # None removes a variable
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def runbook_cli(*args: str, cwd: Path, env: dict | None = None, timeout: float = 60) -> Cli:
    """Run ``python -m engine ARGS`` and wait for it (stdout is a pipe: never a terminal)."""
    done = subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd,
                          env=cli_env(env), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return Cli(done.returncode, done.stdout, done.stderr)


def start_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd,
                            env=cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)


# --- in-process, through the same API the CLI calls ---

@dataclass
class Ran:
    handle: object
    events: list = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.handle.outcome.status

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of(self, step_id: str, type_: str | None = None) -> list:
        """Events of one step (every item of a loop), optionally of one type."""
        return [e for e in self.events
                if e.step and e.step.get("id") == step_id and (type_ is None or e.type == type_)]

    def end(self, step_id: str):
        """The last event that ended the step (succeeded/failed/skipped/planned)."""
        ends = {"step.succeeded", "step.failed", "step.skipped", "step.planned"}
        found = [e for e in self.of(step_id) if e.type in ends]
        assert found, f"step {step_id!r} never ended; events: {self.types}"
        return found[-1]

    def value(self, step_id: str) -> dict:
        """The step's registered value, as resume rebuilds it from the journal."""
        from engine.run.values import restored_value

        return restored_value(self.end(step_id).data)


def run_inprocess(directory: Path, text: str, *, extra=(), inventories=(), **options) -> Ran:
    from engine.run.options import RunOptions
    from engine.run.start import RunRequest, start_run

    path = write_runbook(directory, text)
    for key in ("tags", "skip_tags"):
        if key in options:
            options[key] = frozenset(options[key])
    request = RunRequest(runbook=str(path), inventories=[str(i) for i in inventories],
                         extra=list(extra), options=RunOptions(**options),
                         state_dir=str(Path(directory) / "state"), operator="tester")
    events: list = []
    handle = start_run(request, [events.append])
    return Ran(handle, events)


def journal_lines(state_dir: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(Path(state_dir).glob("runs/*/journal.jsonl"))
            for line in path.read_text().splitlines()]


# --- processes ---

def pid_alive(pid: int) -> bool:
    """True while the process runs; a zombie waiting for its reaper counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != b"Z"


def wait_gone(pid: int, within: float = 3.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


# --- a real HTTP server on 127.0.0.1 ---

class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}
    received: list = []

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.received.append({"method": self.command, "path": self.path, "body": body,
                              "headers": dict(self.headers)})
        status, content_type, payload, delay = self.routes.get(
            self.path, (404, "text/plain", "not found", 0))
        if delay:
            time.sleep(delay)
        data = payload.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@contextmanager
def http_server(routes: dict):
    """Serve ``{path: (status, content_type, body, delay_s)}``; yields (base_url, received)."""
    handler = type("Handler", (_Handler,), {"routes": routes, "received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True  # a slow handler must not hold up the teardown
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.received
    finally:
        server.shutdown()
        server.server_close()


def tree_snapshot(root: Path, exclude: Path | None = None) -> dict:
    """Every path under ``root`` (but ``exclude``) with its type, mode and bytes."""
    snapshot = {}
    for path in sorted(Path(root).rglob("*")):
        if exclude is not None and (path == exclude or exclude in path.parents):
            continue
        info = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        snapshot[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, content)
    return snapshot
