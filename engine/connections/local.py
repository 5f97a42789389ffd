"""Running subprocesses for actions: argv only, own process group, hard timeouts."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass

from engine.errors import ActionError

OUTPUT_LIMIT = 1 << 20  # keep at most 1 MiB of each stream in results


@dataclass(frozen=True)
class Completed:
    rc: int
    stdout: str
    stderr: str


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
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update({str(k): str(v) for k, v in env.items()})
    try:
        process = subprocess.Popen(
            argv, cwd=chdir, env=full_env, start_new_session=True,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
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
    ctx.track(process)
    try:
        out, err = process.communicate(
            input=stdin.encode() if stdin is not None else None, timeout=ctx.time_left())
    except subprocess.TimeoutExpired:
        kill_tree(process)
        process.communicate()
        raise ActionError(f"timed out; stopped {argv[0]} and its child processes") from None
    except BaseException:
        kill_tree(process)  # Ctrl-C or cancellation: leave no orphan behind
        raise
    finally:
        ctx.untrack(process)
    return Completed(process.returncode, _text(out), _text(err))


def _text(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace")
    if len(text) > OUTPUT_LIMIT:
        text = text[:OUTPUT_LIMIT] + "\n[... output truncated ...]"
    return text
