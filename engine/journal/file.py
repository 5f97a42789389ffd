"""The run's journal: an append-only, fsync'd, hash-chained event log.

It is both the checkpoint and the audit log: a run's state is rebuilt only by
replaying it (``engine.journal.replay``). Layout of the default file backend::

    STATE_DIR/runs/RUN_ID/journal.jsonl   one JSON event per line
    STATE_DIR/runs/RUN_ID/lock            flock'd by the process holding the run

Each line is the canonical JSON of the event body plus its ``hash`` (SHA-256
of that canonical body); ``prev`` is the previous event's hash, so an edit,
deletion, insertion or reordering breaks the chain at a known ``seq``.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from engine.checksums import sha256_bytes
from engine.errors import EngineError, RunHeld, RunNotFound, UsageError
from engine.journal.events import JOURNAL_REPAIRED, Event, canonical, event_hash
from engine.jsonvalues import json_safe
from engine.journal.safe_fs import (open_nofollow, read_nofollow,
                                     secure_run_dir, state_io)
from engine.memory import paused_gc
from engine.timestamps import now_ts

GENESIS = "0" * 64
JOURNAL_NAME = "journal.jsonl"


def default_state_dir(option: str | None = None) -> Path:
    """``--state-dir``, else ``RUNBOOK_STATE_DIR``, else ``./.runbook``."""
    return Path(option or os.environ.get("RUNBOOK_STATE_DIR") or ".runbook")


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_run_id(run_id: str) -> str:
    """Run ids name directories and table rows: letters, digits, '.', '_', '-' only."""
    if not _RUN_ID.fullmatch(run_id or ""):
        raise UsageError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' "
                         "(at most 128, starting with a letter or digit)")
    return run_id


def run_dir(state_dir: Path, run_id: str) -> Path:
    return Path(state_dir) / "runs" / check_run_id(run_id)


@dataclass(frozen=True)
class ReadResult:
    events: list[Event]
    torn_line: int | None  # 1-based line number of a torn (partial) last line


def _journal_lines(path: Path) -> tuple[list[bytes], bytes]:
    """The complete lines of a journal file, and what follows the last newline."""
    try:
        raw = read_nofollow(path)
    except FileNotFoundError:
        raise RunNotFound(f"no journal at {path}") from None
    lines = raw.split(b"\n")
    trailing = lines.pop() if lines else b""
    return lines, trailing


def read_events(path: Path) -> ReadResult:
    """Parse a journal file. A partial last line (a crash mid-write) is reported, not fatal."""
    events: list[Event] = []
    lines, trailing = _journal_lines(path)
    with paused_gc():
        for number, line in enumerate(lines, 1):
            event = _parse_line(line)
            if event is None:
                raise JournalCorrupt(f"{path}:{number}: unreadable journal line")
            events.append(event)
    torn = None
    if trailing.strip():
        event = _parse_line(trailing)
        if event is None:
            torn = len(lines) + 1
        else:
            events.append(event)
    return ReadResult(events, torn)


def _parse_line(line: bytes) -> Event | None:
    try:
        obj = json.loads(line)
        return Event(**obj)
    except (ValueError, TypeError):
        return None


class JournalCorrupt(EngineError):
    exit_code = 1


class JournalTampered(EngineError):
    """A run's hash chain does not verify: resume and approve refuse to act on it."""

    exit_code = 2

    def __init__(self, run_id: str, seq: int | None, problem: str) -> None:
        super().__init__(f"run {run_id}: the journal fails verification at seq {seq} ({problem}); "
                         f"refusing to act on it — see 'runbook audit verify {run_id}'")


def check_verified(run_id: str, result: "Verification") -> None:
    """Raise ``JournalTampered`` unless the chain verified (a torn last line is no tampering)."""
    if not result.ok:
        raise JournalTampered(run_id, result.first_bad_seq, result.problem)


class RunLock:
    """An exclusive OS lock on a run directory; says who holds it when it is taken."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "lock"
        self.fd: int | None = None

    def acquire(self, holder: dict) -> None:
        with state_io("open the lock file", self.path):
            fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise RunHeld(f"run {self.path.parent.name} is held by {self._holder()}") from None
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same; only the holder's name is missing
        self.fd = fd

    def _holder(self) -> str:
        try:
            info = json.loads(read_nofollow(self.path).decode("utf-8", "replace") or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another process"
        return (f"operator {info.get('operator', '?')} on host {info.get('host', '?')} "
                f"(pid {info.get('pid', '?')})")

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


# fdatasync flushes the appended bytes and the new file size (all a reader
# needs) without the mtime-only metadata write that fsync adds.
_sync = getattr(os, "fdatasync", os.fsync)


class JournalWriteFailed(EngineError):
    """The disk refused a journal line (full, read-only, I/O error): the run stops cleanly."""

    exit_code = 1


class FileSink:
    """Where a journal's lines go by default: one file, each write fsync'd.

    A write is whole or not at all: a short or failed write (a full disk, a read-only
    remount, an I/O error) is cut back to the last whole event, and the sink refuses
    every later write, so the journal stays readable and the run stops.
    """

    def __init__(self, path: Path, fsync: bool = True) -> None:
        self.path = Path(path)
        with state_io("open the journal", self.path):
            self._fd = open_nofollow(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            self._size = os.fstat(self._fd).st_size
        self._fsync = fsync
        self._failure: JournalWriteFailed | None = None

    def write(self, body: dict, line: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        try:
            self._write_all(line)
            if self._fsync:
                _sync(self._fd)
        except OSError as exc:
            self._cut_back()
            self._failure = JournalWriteFailed(
                f"cannot write event {body.get('seq')} to the journal {self.path}: "
                f"{exc.strerror or exc}. The run stops here; the journal keeps every event "
                f"before this one. Fix the disk, then: runbook resume {body.get('run_id')}")
            raise self._failure from None
        self._size += len(line)

    def _write_all(self, line: bytes) -> None:
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            if written <= 0:
                raise OSError(errno.ENOSPC, "short write (nothing written)")
            view = view[written:]

    def _cut_back(self) -> None:
        """Drop a partial line: the file ends with the last whole event again."""
        try:
            os.ftruncate(self._fd, self._size)
            _sync(self._fd)
        except OSError:
            pass  # the disk refuses even that: a resume repairs the torn tail

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Journal:
    """Appends hash-chained events to one run's journal; each is durable before ``append`` returns.

    ``directory`` is the run's local working directory (for artifacts);
    ``sink`` is where the events go (a file by default, a table with the
    PostgreSQL store).
    """

    def __init__(self, directory: Path, run_id: str, operator: str, host: str,
                 events: Iterable[Event] = (), *, sink=None, guard=None) -> None:
        self.directory = directory
        self.run_id = run_id
        self.operator = operator
        self.host = host
        self.events: list[Event] = list(events)
        self._observers: list[tuple] = []  # (observer, on_error)
        self._lock = threading.Lock()
        self.guard = guard
        self.sink = sink if sink is not None else FileSink(directory / JOURNAL_NAME)

    @property
    def head(self) -> str:
        return self.events[-1].hash if self.events else GENESIS

    def subscribe(self, observer: Callable[[Event], None],
                  on_error: Callable[[object, BaseException], None] | None = None) -> None:
        """Show every later event to ``observer``. An observer that raises is stopped and
        ``on_error(observer, exc)`` is told once: no observer can end a run."""
        self._observers.append((observer, on_error))

    def append(self, type: str, step: dict | None = None, data: dict | None = None) -> Event:
        """Write one event durably, then show it to the observers."""
        if self.guard is not None:
            with self.guard.critical():
                event = self._write(type, step, data)
        else:
            event = self._write(type, step, data)
        for entry in list(self._observers):
            self._notify(entry, event)
        return event

    def _notify(self, entry, event: Event) -> None:
        observer, on_error = entry
        try:
            observer(event)
        except Exception as exc:  # the event is durable already: the run must go on
            if entry in self._observers:
                self._observers.remove(entry)
            if on_error is not None:
                on_error(observer, exc)

    def _write(self, type: str, step: dict | None, data: dict | None) -> Event:
        with self._lock:
            body = {"seq": len(self.events) + 1, "ts": now_ts(), "run_id": self.run_id,
                    "type": type, "step": step, "operator": self.operator, "host": self.host,
                    "data": json_safe(data or {}), "prev": self.head}
            encoded = canonical(body)
            digest = sha256_bytes(encoded)
            self.sink.write(body, encoded[:-1] + b',"hash":"' + digest.encode() + b'"}\n')
            event = Event(**body, hash=digest)
            self.events.append(event)
        return event

    def close(self) -> None:
        self.sink.close()


def _holder_info(operator: str) -> dict:
    return {"operator": operator, "host": socket.gethostname(), "pid": os.getpid()}


def create_run(state_dir: Path, run_id: str, operator: str) -> tuple[Journal, RunLock]:
    """Start a new run's journal. An existing run id is refused (held: exit 5)."""
    directory = secure_run_dir(state_dir, run_dir(state_dir, run_id), create=True)
    lock = RunLock(directory)
    lock.acquire(_holder_info(operator))
    if (directory / JOURNAL_NAME).exists() and (directory / JOURNAL_NAME).stat().st_size:
        lock.release()
        raise RunHeld(f"run {run_id} already exists in {state_dir}: "
                      f"use 'runbook resume {run_id}' or another --run-id")
    return Journal(directory, run_id, operator, socket.gethostname()), lock


def open_run(state_dir: Path, run_id: str, operator: str) -> tuple[Journal, RunLock]:
    """Take an existing run for resuming: lock it, replay its file, repair a torn tail."""
    directory = run_dir(state_dir, run_id)
    if not os.path.lexists(directory / JOURNAL_NAME):
        raise RunNotFound(f"no run {run_id!r} in {state_dir} (see 'runbook runs')")
    secure_run_dir(state_dir, directory, create=False)
    lock = RunLock(directory)
    lock.acquire(_holder_info(operator))
    try:
        check_verified(run_id, verify_file(directory / JOURNAL_NAME))
        result = read_events(directory / JOURNAL_NAME)
        if result.torn_line is not None:
            _truncate_torn_tail(directory / JOURNAL_NAME)
        journal = Journal(directory, run_id, operator, socket.gethostname(), result.events)
        if result.torn_line is not None:
            journal.append(JOURNAL_REPAIRED, data={"torn_line": result.torn_line})
    except BaseException:
        lock.release()
        raise
    return journal, lock


def _truncate_torn_tail(path: Path) -> None:
    raw = read_nofollow(path)
    keep = raw[: raw.rfind(b"\n") + 1]
    fd = open_nofollow(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, len(keep))
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int
    head: str
    first_bad_seq: int | None = None
    problem: str = ""
    torn_line: int | None = None


def verify_file(path: Path) -> Verification:
    """Check a journal file's hash chain. A torn last line (crash mid-write) is not tampering."""
    lines, trailing = _journal_lines(path)
    torn = None
    if trailing.strip():
        try:
            json.loads(trailing)
            lines.append(trailing)
        except ValueError:
            torn = len(lines) + 1
    return verify_lines(lines, torn)


def verify_lines(lines: list[bytes], torn_line: int | None = None) -> Verification:
    """Verify stored journal lines (as the file and the PostgreSQL store keep them)."""
    prev = GENESIS
    for index, line in enumerate(lines):
        expected = index + 1
        fields = _chain_fields(line)
        if fields is None:  # not in the engine's own layout: the careful way
            try:
                body = json.loads(line)
            except ValueError:
                body = None
            result = verify_chain([body], None, [line], start=(expected, prev))
            if not result.ok:
                return Verification(False, len(lines), prev, expected, result.problem)
            prev = result.head
            continue
        seq, claimed_prev, claimed = fields
        problem = _link_problem(expected, prev, seq, claimed_prev)
        if problem is None and sha256_bytes(line[:-_SUFFIX] + b"}") != claimed:
            problem = "hash mismatch (event edited)"
        if problem is not None:
            return Verification(False, len(lines), prev, expected, problem)
        prev = claimed
    return Verification(True, len(lines), prev, torn_line=torn_line)


def _chain_fields(line: bytes) -> tuple[int, str, str] | None:
    """(seq, prev, hash) read straight from an engine-written line, or None.

    Canonical JSON sorts keys, so the top-level ``prev`` and ``seq`` are the
    last occurrences of those keys (a quote inside a string is always
    escaped, so the patterns cannot come from a value). Whatever is read is
    then checked against the hash of the line's own bytes.
    """
    if not (line[-_SUFFIX:].startswith(_HASH_KEY) and line.endswith(b'"}')):
        return None
    at_prev = line.rfind(b',"prev":"')
    at_seq = line.rfind(b',"seq":')
    if at_prev < 0 or at_seq < 0:
        return None
    end_seq = line.find(b",", at_seq + 7)
    try:
        seq = int(line[at_seq + 7:end_seq])
    except ValueError:
        return None
    prev = line[at_prev + 9:at_prev + 9 + 64].decode("ascii", "replace")
    return seq, prev, line[-66:-2].decode("ascii", "replace")


def _link_problem(expected: int, prev: str, seq, claimed_prev) -> str | None:
    if seq != expected:
        return (f"expected seq {expected}, found {seq} "
                "(event deleted, inserted or reordered)")
    if claimed_prev != prev:
        return ("prev does not match the previous event's hash "
                "(event deleted, inserted or reordered)")
    return None


_HASH_KEY = b',"hash":"'
_SUFFIX = len(_HASH_KEY) + 64 + 2  # ,"hash":"<64 hex>"}


def _recomputed_hash(body: dict, line: bytes | None) -> str:
    """SHA-256 of the event without ``hash``.

    A line written by the engine is the canonical body with ``hash`` appended,
    so the body's bytes are the line minus that suffix: hashing them skips
    re-serialising (the slow part of verifying 100,000 events). A line in any
    other shape is re-serialised canonically; a reformatted line then fails,
    as an edit should.
    """
    if line is not None and line[-_SUFFIX:].startswith(_HASH_KEY) and line.endswith(b'"}'):
        return sha256_bytes(line[:-_SUFFIX] + b"}")
    return event_hash(body)


def verify_chain(bodies: list, torn_line: int | None = None,
                 lines: list[bytes] | None = None, start: tuple[int, str] = (1, GENESIS)
                 ) -> Verification:
    """Recompute every hash and link of parsed events (dicts or ``Event``s); name the first bad ``seq``.

    ``lines``, when given, are the stored bytes of each body (same order);
    ``start`` is the (seq, prev) the first body must continue from.
    """
    first_seq, prev = start
    for index, body in enumerate(bodies):
        expected = first_seq + index
        if isinstance(body, Event):
            body = {**body.body(), "hash": body.hash}
        if not isinstance(body, dict) or "hash" not in body:
            return Verification(False, len(bodies), prev, expected, "unreadable event (edited)")
        problem = _link_problem(expected, prev, body.get("seq"), body.get("prev"))
        if problem is not None:
            return Verification(False, len(bodies), prev, expected, problem)
        claimed = body.pop("hash")
        line = lines[index] if lines is not None else None
        if _recomputed_hash(body, line) != claimed:
            return Verification(False, len(bodies), prev, expected, "hash mismatch (event edited)")
        prev = claimed
    return Verification(True, len(bodies), prev, torn_line=torn_line)
