"""Running subprocesses for actions: argv only, own process group, hard timeouts.

Output is read as it comes and capped while reading (``CappedOutput``): a step
that prints a gigabyte keeps the first and last half MiB of each stream and
says how much it dropped, and the engine's memory stays flat. The SSH
transport (``engine.connections.ssh``) returns the same ``Completed``.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass

from engine.errors import ActionError

OUTPUT_LIMIT = 1 << 20  # keep at most 1 MiB of each stream in results
CHUNK = 1 << 16


@dataclass(frozen=True)
class Completed:
    rc: int
    stdout: str
    stderr: str
    #: bytes left out of the middle of each stream (see ``CappedOutput``)
    stdout_dropped: int = 0
    stderr_dropped: int = 0


class CappedOutput:
    """A stream's first and last ``limit / 2`` bytes, and how many bytes in between
    were dropped: memory stays flat whatever a command prints."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.seen = 0

    def feed(self, chunk: bytes) -> None:
        self.seen += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > 2 * self.tail_limit:  # trim now and then, not per chunk
                del self.tail[:len(self.tail) - self.tail_limit]

    @property
    def dropped(self) -> int:
        return self.seen - len(self.head) - min(len(self.tail), self.tail_limit)

    def text(self) -> str:
        tail = bytes(self.tail[-self.tail_limit:]) if self.tail else b""
        head = self.head.decode("utf-8", errors="replace")
        if not self.dropped:
            return head + tail.decode("utf-8", errors="replace")
        return (head + f"\n[... {self.dropped} bytes of output dropped ...]\n"
                + tail.decode("utf-8", errors="replace"))


def completed(rc: int, stdout: CappedOutput, stderr: CappedOutput) -> Completed:
    return Completed(rc, stdout.text(), stderr.text(), stdout.dropped, stderr.dropped)


def kill_tree(process: subprocess.Popen, grace: float = 1.0) -> None:
    """Stop ``process`` and everything it started (its process group): TERM, then KILL.

    The group is signalled even when the leader has already exited: a background
    grandchild (``sleep 30 &``) outlives its shell and still holds the step's pipes.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()  # reap the leader so only live members keep the group
            if not _group_alive(process.pid):
                return
            time.sleep(0.02)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies awaiting their reaper do not count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not os.path.isdir("/proc/self"):
        return True
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def run_process(argv: list[str], ctx, *, chdir: str | None = None,
                env: dict | None = None, stdin: str | None = None) -> Completed:
    """Run ``argv`` to completion within the step's deadline; never through a shell."""
    process = _start(argv, chdir, env, stdin is not None)
    ctx.track(process)
    stdout, stderr = CappedOutput(), CappedOutput()
    try:
        deadline = None if ctx.deadline is None else ctx.deadline
        _pump(process, stdin.encode() if stdin is not None else None, stdout, stderr, deadline)
        process.wait(timeout=_left(deadline))
    except (subprocess.TimeoutExpired, _Expired):
        kill_tree(process)
        process.wait()
        raise ActionError(f"timed out; stopped {argv[0]} and its child processes") from None
    except BaseException:
        kill_tree(process)  # Ctrl-C or cancellation: leave no orphan behind
        raise
    finally:
        ctx.untrack(process)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()
    return completed(process.returncode, stdout, stderr)


def _start(argv: list[str], chdir: str | None, env: dict | None, with_stdin: bool) -> subprocess.Popen:
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update({str(k): str(v) for k, v in env.items()})
    try:
        return subprocess.Popen(
            argv, cwd=chdir, env=full_env, start_new_session=True,
            stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        if chdir and not os.path.isdir(chdir):  # Popen reports a missing cwd the same way
            raise ActionError(f"chdir does not exist: {chdir}") from None
        raise ActionError(f"command not found: {argv[0]}") from None
    except PermissionError:
        raise ActionError(f"permission denied: {argv[0]}") from None
    except NotADirectoryError:
        raise ActionError(f"chdir is not a directory: {chdir}") from None
    except OSError as exc:
        raise ActionError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None


class _Expired(Exception):
    """The step's deadline passed while output was still coming."""


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _pump(process: subprocess.Popen, data: bytes | None, stdout: CappedOutput,
          stderr: CappedOutput, deadline: float | None) -> None:
    """Feed stdin and read both pipes as they come, until both reach end of file."""
    sinks = {process.stdout.fileno(): stdout, process.stderr.fileno(): stderr}
    with selectors.DefaultSelector() as selector:
        for fd in sinks:
            selector.register(fd, selectors.EVENT_READ)
        if data is not None:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin.fileno(), selectors.EVENT_WRITE)
        view = memoryview(data or b"")
        while selector.get_map():
            left = _left(deadline)
            if left == 0:
                raise _Expired
            for key, _ in selector.select(left):
                if key.events & selectors.EVENT_WRITE:
                    view = _write_some(process, selector, key.fd, view)
                    continue
                chunk = os.read(key.fd, CHUNK)
                if chunk:
                    sinks[key.fd].feed(chunk)
                else:
                    selector.unregister(key.fd)


def _write_some(process, selector, fd: int, view: memoryview) -> memoryview:
    try:
        view = view[os.write(fd, view[:CHUNK]):] if view else view
    except BrokenPipeError:  # the program does not read its input: not our failure
        view = view[len(view):]
    except BlockingIOError:
        return view
    if not view:
        selector.unregister(fd)
        process.stdin.close()
    return view
