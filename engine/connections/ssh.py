"""Remote execution over SSH (asyncssh): one kept connection per target per run.

A step runs on a host when its target has an ``ssh:`` block::

    db1: {ssh: {host: 10.0.0.5, user: postgres, key: ~/.ssh/dr, become: true}}

``remote(ctx)`` returns the ``Session`` of the step's target (connected once per
run, then reused: many commands on one connection), or None when the step runs
locally. ``Session.run`` has the shape of ``engine.connections.local.run_process``
and returns the same ``Completed``: the argv is quoted with ``shlex.join`` for the
remote login shell (never re-parsed into other words), output is streamed and
capped while reading, and the step's deadline kills the remote process group.

asyncssh is asyncio; the engine's steps (and its parallel forks) are threads. A
``Pool`` per run owns one event loop in a background thread and every
connection of the run; threads hand it coroutines and wait for their result.
Host keys are always checked against ``known_hosts`` (the target's, else
``~/.ssh/known_hosts``) unless a target says ``host_key_checking: false``.
"""
from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

from engine.errors import ActionError
from engine.connections.local import CappedOutput, Completed, completed
from engine.connections.ssh_login import PreflightFailed

SETTINGS = ("host", "port", "user", "key", "key_passphrase", "password", "known_hosts",
            "host_key_checking", "become", "become_user", "connect_timeout")
_PID_MARK = re.compile(rb"rbk-pid:(\d+)\n")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_POLL = 0.1  # how often a waiting command looks at the deadline and Ctrl-C


@dataclass(frozen=True)
class Settings:
    """A target's ``ssh:`` block, checked."""

    target: str
    host: str
    port: int = 22
    user: str | None = None
    key: str | None = None
    key_passphrase: str | None = None
    password: str | None = None
    known_hosts: str | None = None
    host_key_checking: bool = True
    become: bool = False
    become_user: str = "root"
    connect_timeout: float = 10.0

    @property
    def address(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"

    @property
    def known_hosts_path(self) -> str:
        return os.path.expanduser(self.known_hosts or "~/.ssh/known_hosts")


def settings_of(target: dict | None) -> Settings | None:
    """The target's SSH settings, or None when it has no ``ssh:`` block (run locally)."""
    block = (target or {}).get("ssh")
    if block is None:
        return None
    name = str((target or {}).get("name", "?"))
    if not isinstance(block, dict):
        raise PreflightFailed(f"target {name}: ssh must be a mapping of {', '.join(SETTINGS)}")
    unknown = sorted(set(block) - set(SETTINGS))
    if unknown:
        raise PreflightFailed(f"target {name}: unknown ssh setting(s) {', '.join(unknown)} "
                          f"(known: {', '.join(SETTINGS)})")
    if not block.get("host"):
        # a group's shared ssh: block (user, key ...) with each target's own top-level host
        block = {**block, "host": (target or {}).get("host")}
    if not block.get("host"):
        raise PreflightFailed(f"target {name}: ssh.host (or the target's host) is required")
    return Settings(target=name, **_typed(name, block))


def _typed(name: str, block: dict) -> dict:
    values = {k: v for k, v in block.items() if v is not None}
    try:
        for key in ("port",):
            if key in values:
                values[key] = int(values[key])
        if "connect_timeout" in values:
            from engine.durations import parse_duration

            values["connect_timeout"] = float(parse_duration(values["connect_timeout"]))
    except (TypeError, ValueError) as exc:
        raise PreflightFailed(f"target {name}: ssh: {exc}") from None
    for key in ("host_key_checking", "become"):
        if key in values and not isinstance(values[key], bool):
            raise PreflightFailed(f"target {name}: ssh.{key} must be true or false")
    for key in ("host", "user", "key", "key_passphrase", "password", "known_hosts", "become_user"):
        if key in values:
            values[key] = str(values[key])
    if "key" in values:
        values["key"] = os.path.expanduser(values["key"])
    return values


def remote(ctx) -> "Session | None":
    """The SSH session of the step's target, connected (once per run), or None."""
    settings = settings_of(ctx.target)
    if settings is None:
        return None
    return ctx.connection("ssh", Pool).session(settings, ctx)


def required(ctx, action: str) -> "Session":
    session = remote(ctx)
    if session is None:
        where = f"target {ctx.target['name']} has" if ctx.target else "the step has no target: needs"
        raise ActionError(f"{action} runs on a host: {where} no ssh: block")
    return session


# --- the run's event loop and its connections ---

class Pool:
    """One asyncio loop in a daemon thread, and one connection per target (per run)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ssh-loop", daemon=True)
        self._thread.start()
        self._sessions: dict[str, Session] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def session(self, settings: Settings, ctx) -> "Session":
        """The target's session; the first caller connects, others for it wait (per target)."""
        with self._guard:
            lock = self._locks.setdefault(settings.target, threading.Lock())
        with lock:
            session = self._sessions.get(settings.target)
            if session is None or session.closed:
                session = Session(self, settings)
                session.open(ctx)
                self._sessions[settings.target] = session
            return session

    def call(self, coroutine, stop: threading.Event | None = None, grace: float = 5.0) -> Any:
        """Run ``coroutine`` on the loop and wait for it. On Ctrl-C in this thread ``stop``
        is set, so the coroutine can clean up (kill the remote process) before we go on."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            if stop is not None and not future.done():
                stop.set()
                try:
                    future.result(timeout=grace)
                except BaseException:
                    pass
            future.cancel()
            raise

    def close(self) -> None:
        """Close every connection, then stop the loop (end of the run)."""
        sessions = list(self._sessions.values())
        self._sessions.clear()
        if sessions:
            try:
                self.call(_close_all(sessions))
            except Exception:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


async def _close_all(sessions) -> None:
    for session in sessions:
        session.connection.close()
    await asyncio.gather(*(s.connection.wait_closed() for s in sessions),
                         return_exceptions=True)


# --- one host ---

class Session:
    """A kept connection to one target's host: run commands on it, check ``become``."""

    def __init__(self, pool: Pool, settings: Settings) -> None:
        self.pool = pool
        self.settings = settings
        self.connection = None
        self.fingerprint = ""
        self.no_forwarding = False  # the server refused a direct-tcpip channel once

    @property
    def closed(self) -> bool:
        return self.connection is None or self.connection.is_closed()

    @property
    def name(self) -> str:
        return self.settings.target

    def open(self, ctx) -> None:
        """Connect (host key, authentication), then prove ``become`` works (sudo -n)."""
        from engine.connections.ssh_login import connect

        self.connection, self.fingerprint = self.pool.call(connect(self.settings))
        if self.settings.become:
            try:
                done = self.run(["true"], ctx)
            except ActionError as exc:  # sudo -n refused: no use of this host until fixed
                raise PreflightFailed(str(exc)) from None
            if done.rc != 0:
                raise PreflightFailed(self._become_refused(done.stderr))

    def describe(self) -> dict:
        """What the journal records about where a step ran (host key checking included)."""
        s = self.settings
        return {"host": s.host, "port": s.port, "user": s.user, "host_key": self.fingerprint,
                "host_key_checked": s.host_key_checking,
                "become": s.become_user if s.become else None}

    def note(self) -> str:
        """A warning for plans and messages when host keys are not checked."""
        if self.settings.host_key_checking:
            return ""
        return f" [host key NOT checked on {self.name}: host_key_checking: false]"

    def run(self, argv: list[str], ctx, *, chdir: str | None = None,
            env: dict | None = None, stdin: str | bytes | None = None,
            stdout=None, stdin_file: str | None = None) -> Completed:
        """Run ``argv`` on the host within the step's deadline (``local.run_process``'s twin).

        ``stdout`` may be a sink with ``feed(bytes)`` (a download) instead of the capped
        buffer; ``stdin_file`` streams a local file to the command (an upload)."""
        command = _command(argv, chdir, env, self.settings)
        source = stdin.encode() if isinstance(stdin, str) else stdin
        job = _Job(command, source, stdin_file, stdout or CappedOutput(), CappedOutput(),
                   ctx.deadline, ctx.cancelled)
        try:
            rc = self.pool.call(self._execute(job), job.stop)
        except _Timeout:
            raise ActionError(f"timed out on {self.name}; stopped {argv[0]} and its child "
                              f"processes there") from None
        except _Cancelled:
            raise ActionError(f"cancelled; stopped {argv[0]} on {self.name}") from None
        except (OSError, EOFError, _ssh_error()) as exc:
            reason = getattr(exc, "reason", "") or exc
            raise ActionError(f"{self.name}: connection lost while running {argv[0]}: "
                              f"{reason}") from None
        done = completed(rc, job.stdout if stdout is None else CappedOutput(), job.stderr)
        self._check_launch(argv, done)
        return done

    def port_open(self, host: str, port: int, ctx) -> bool:
        """Whether ``host:port`` accepts TCP connections *as seen from this host*: a
        direct-tcpip channel (sshd connects for us); where the server forbids forwarding,
        bash's /dev/tcp on the host."""
        if not self.no_forwarding:
            try:
                return self.pool.call(self._port_open(host, port))
            except _ForwardingRefused:
                self.no_forwarding = True
        done = self.run(["bash", "-c", 'exec 3<>"/dev/tcp/$0/$1"', host, str(port)], ctx)
        return done.rc == 0

    async def _port_open(self, host: str, port: int) -> bool:
        import asyncssh

        try:
            _, writer = await asyncio.wait_for(self.connection.open_connection(host, port), 5)
        except asyncssh.ChannelOpenError as exc:
            if exc.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
                raise _ForwardingRefused from None
            return False
        except asyncio.TimeoutError:
            return False
        writer.close()
        return True

    def _check_launch(self, argv: list[str], done: Completed) -> None:
        """Failures of the launch itself (not of the program) as the local runner words them."""
        err = done.stderr.strip()
        if self.settings.become and done.rc == 1 and err.startswith("sudo:"):
            raise ActionError(self._become_refused(err))
        # the wrapper's own ``exec`` failed (not a 127 that the program returned itself)
        if done.rc == 127 and f"exec: {argv[0]}: not found" in err:
            raise ActionError(f"command not found on {self.name}: {argv[0]}")
        if done.rc == 126 and f"exec: {argv[0]}: " in err and "ermission denied" in err:
            raise ActionError(f"permission denied on {self.name}: {argv[0]}")

    def _become_refused(self, stderr: str) -> str:
        reason = (stderr.strip().splitlines() or ["refused"])[-1][:200]
        hint = " (sudo wants a password: become needs NOPASSWD sudo)" if "password" in reason else ""
        return (f"{self.name}: become {self.settings.become_user} failed: sudo -n on "
                f"{self.settings.address}: {reason}{hint}")

    async def _execute(self, job: "_Job") -> int:
        process = await self.connection.create_process(job.command, encoding=None)
        job.process = process
        readers = asyncio.gather(_read(process.stdout, _PidSink(job)), _read(process.stderr, job.stderr))
        readers.add_done_callback(lambda done: done.cancelled() or done.exception())
        feeder = asyncio.ensure_future(_feed(process, job))
        try:
            await _until(readers, job)
            await process.wait_closed()
        except BaseException:
            readers.cancel()
            await self._stop(job)
            raise
        finally:
            feeder.cancel()
        if process.exit_status is None or process.exit_status < 0:
            # killed by a signal: negative, like subprocess's returncode locally
            name = process.exit_signal[0] if process.exit_signal else ""
            return -getattr(signal, f"SIG{name}", 0) or -1
        return process.exit_status

    async def _stop(self, job: "_Job") -> None:
        """Kill the remote command's process group (TERM, then KILL), as the same user."""
        if job.pid and job.pid > 1:  # never "kill -1": that is every process of the user
            script = _KILL_GROUP.replace("PGID", str(job.pid))
            try:
                command = _wrap_become(script, self.settings)
                await asyncio.wait_for(self.connection.run(command, check=False), 5)
            except Exception:
                pass  # the connection itself is gone: the remote side sees a hang-up
        if job.process is not None:
            job.process.close()


#: TERM the group, wait up to 2 s for its live members (zombies do not count: an orphan
#: waits for init to reap it), then KILL. "kill -SIG -PGID": dash's kill has no "--".
_KILL_GROUP = ("kill -TERM -PGID 2>/dev/null || exit 0; alive() { if command -v ps >/dev/null; "
               "then ps -e -o pgid= -o stat= | awk '$1 == PGID && $2 !~ /^Z/ {f = 1} END {exit !f}'; "
               "else kill -0 -PGID 2>/dev/null; fi; }; i=0; while [ $i -lt 20 ]; do alive || exit 0; "
               "sleep 0.1; i=$((i+1)); done; kill -KILL -PGID")


def _ssh_error() -> type:
    import asyncssh

    return asyncssh.Error


class _ForwardingRefused(Exception):
    pass


class _Timeout(Exception):
    pass


class _Cancelled(Exception):
    pass


class _Job:
    """One remote command: what to send, where its output goes, when to give up."""

    def __init__(self, command: str, stdin: bytes | None, stdin_file: str | None, stdout,
                 stderr: CappedOutput, deadline: float | None, cancelled: threading.Event) -> None:
        self.command, self.stdin, self.stdin_file = command, stdin, stdin_file
        self.stdout, self.stderr = stdout, stderr
        self.deadline, self.cancelled = deadline, cancelled
        self.stop = threading.Event()  # set by the waiting thread on Ctrl-C
        self.pid: int | None = None
        self.process = None

    def check(self) -> None:
        if self.stop.is_set() or self.cancelled.is_set():
            raise _Cancelled
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise _Timeout


async def _until(task, job: _Job) -> None:
    """Wait for ``task`` while watching the deadline and Ctrl-C."""
    while True:
        job.check()
        timeout = _POLL if job.deadline is None else max(0.0, min(_POLL, job.deadline - time.monotonic()))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if done:
            task.result()
            return


async def _read(stream, sink) -> None:
    while chunk := await stream.read(1 << 16):
        sink.feed(chunk)


async def _feed(process, job: _Job) -> None:
    """Send stdin (bytes, or a local file in chunks), then end of file."""
    try:
        if job.stdin is not None:
            process.stdin.write(job.stdin)
        elif job.stdin_file is not None:
            with open(job.stdin_file, "rb") as handle:
                while chunk := handle.read(1 << 16):
                    process.stdin.write(chunk)
                    await process.stdin.drain()
        process.stdin.write_eof()
    except (OSError, ConnectionError, EOFError):
        pass  # the command exited without reading all its input: its rc tells


class _PidSink:
    """Takes the ``rbk-pid:N`` line our wrapper prints first; passes the rest on."""

    def __init__(self, job: _Job) -> None:
        self.job = job
        self.pending = b""
        self.found = False

    def feed(self, chunk: bytes) -> None:
        if self.found:
            self.job.stdout.feed(chunk)
            return
        self.pending += chunk
        match = _PID_MARK.search(self.pending)
        if match is None and len(self.pending) < 65536:
            return
        self.found = True
        if match is not None:
            self.job.pid = int(match.group(1))
            self.pending = self.pending[:match.start()] + self.pending[match.end():]
        self.job.stdout.feed(self.pending)
        self.pending = b""


# --- the remote command line ---

def _command(argv: list[str], chdir: str | None, env: dict | None, settings: Settings) -> str:
    """The string the remote login shell runs: prints its pid (the process group to kill
    on timeout), then ``exec``s the exact argv, quoted (never re-split)."""
    parts = []
    if chdir:
        parts.append(f"cd -- {shlex.quote(chdir)}")
    for name, value in (env or {}).items():
        if not _NAME.match(str(name)):
            raise ActionError(f"env: {name!r} is not a valid variable name")
        parts.append(f"export {name}={shlex.quote(str(value))}")
    parts.append("exec " + shlex.join(str(a) for a in argv))
    script = " && ".join(parts)
    return "printf 'rbk-pid:%s\\n' \"$$\"; " + _wrap_become(script, settings)


def _wrap_become(script: str, settings: Settings) -> str:
    if not settings.become:
        return script
    return (f"exec sudo -n -u {shlex.quote(settings.become_user)} -- /bin/sh -c "
            f"{shlex.quote(script)}")
