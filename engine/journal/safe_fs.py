"""The state directory's files, opened safely: never through a planted symlink, only in
directories that belong to the user and that nobody else can write, run dirs 0700.

The state dir itself (``--state-dir``) may be a symlink the user made (to a bigger
disk); below it, ``runs/``, each run directory and its files may not be.
"""
from __future__ import annotations

import errno
import os
import stat
from contextlib import contextmanager
from pathlib import Path

from engine.errors import UsageError


class StateDirUnusable(UsageError):
    """The state directory cannot be created, written or trusted (exit 2)."""


@contextmanager
def state_io(what: str, path: Path):
    """An OS error while setting up a run's files is the user's to fix: one clear line."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateDirUnusable(f"cannot {what} {path}: it is a symlink (refused: a run's "
                                   "files are never reached through a symlink)") from None
        raise StateDirUnusable(f"cannot {what} {path}: {exc.strerror or exc} "
                               "(check the state directory: --state-dir, RUNBOOK_STATE_DIR)") from None


def open_nofollow(path: Path, flags: int, mode: int = 0o600) -> int:
    """Open a run's file without following a symlink planted in its place."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


def read_nofollow(path: Path) -> bytes:
    """A run file's bytes; a symlink in its place is refused (FileNotFoundError passes)."""
    with state_io("read", path):
        fd = open_nofollow(path, os.O_RDONLY)
        with os.fdopen(fd, "rb") as handle:
            return handle.read()


def secure_run_dir(state_dir: Path, run_id_dir: Path, create: bool) -> Path:
    """Check (and with ``create`` make, 0700) the state dir, ``runs/`` and the run's dir."""
    state_dir = Path(state_dir)
    for index, path in enumerate((state_dir, state_dir / "runs", run_id_dir)):
        if create:
            with state_io("create the directory", path):
                try:
                    os.mkdir(path, 0o700)
                except FileExistsError:
                    pass
        _check_dir(path, may_be_link=index == 0)
    return run_id_dir


def _check_dir(path: Path, may_be_link: bool) -> None:
    with state_io("inspect", path):
        info = os.stat(path) if may_be_link else os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise StateDirUnusable(f"{path} is a symlink: refused (a run's files are never "
                               "reached through a symlink)")
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirUnusable(f"{path} is not a directory")
    if info.st_uid != os.geteuid():
        raise StateDirUnusable(f"{path} belongs to uid {info.st_uid}, not to you "
                               f"(uid {os.geteuid()}): refused")
    if info.st_mode & 0o022:
        raise StateDirUnusable(f"{path} is writable by group or others "
                               f"(mode {stat.S_IMODE(info.st_mode):o}): refused; chmod 700 it")
