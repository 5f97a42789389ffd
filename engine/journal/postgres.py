"""Runs in a shared PostgreSQL table (``--state-url`` / ``RUNBOOK_STATE_URL``).

The same events as the file backend, one row per event, so a team shares runs
across machines: one operator starts a run, another resumes or approves it
from elsewhere. The schema is created on first use::

    runbook_events(run_id, seq, ts, type, line, hash)   PRIMARY KEY (run_id, seq)
    runbook_holders(run_id, operator, host, pid, backend_pid, since)

``line`` is the exact JSON line the file backend would write (without the
newline); the hash chain covers it. ``ts``, ``type`` and ``hash`` copy it so
the table can be queried, and ``runbook audit verify`` checks they agree.

A run is held by one process at a time: a session advisory lock on a
connection of its own, kept open as long as the run is held (the server drops
it with the process or its connection), plus a ``runbook_holders`` row so a
loser can name the holder. The holder's appends go through that same
connection, so an append never succeeds on a session that lost the lock. The
primary key is the last line of defence: of two writers that bypass the lock,
exactly one gets each ``seq``; the other raises ``RunHeld`` (exit 5) and
writes nothing more.

psycopg is imported here only, when a command uses this backend. Passwords in
the URL are masked in every message.
"""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from engine.connections.postgres import connect
from engine.errors import EXIT_FAILED, EngineError, RunHeld, RunNotFound, UsageError
from engine.journal.events import AFTERWORDS, Event
from engine.journal.file import (GENESIS, Journal, JournalCorrupt, Verification, _holder_info,
                                 check_verified, run_dir, verify_chain)
from engine.journal.safe_fs import secure_run_dir
from engine.journal.pg_lock import LEASE, AdvisoryLock, LockLost, lock_key
from engine.journal.views import RunSummary, summary_from
from engine.secrets import mask_dsn, sanitize

__all__ = ["PostgresStore", "TableSink", "AdvisoryLock", "StateUnavailable", "lock_key"]

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runbook_events (
        run_id text NOT NULL,
        seq integer NOT NULL,
        ts text NOT NULL,
        type text NOT NULL,
        line text NOT NULL,
        hash text NOT NULL,
        PRIMARY KEY (run_id, seq))""",
    """CREATE TABLE IF NOT EXISTS runbook_holders (
        run_id text PRIMARY KEY,
        operator text NOT NULL,
        host text NOT NULL,
        pid integer NOT NULL,
        backend_pid integer NOT NULL,
        since timestamptz NOT NULL DEFAULT now())""",
    # the lease (engine.journal.pg_lock): who holds the run, and when it last said so
    "ALTER TABLE runbook_holders ADD COLUMN IF NOT EXISTS token text",
    "ALTER TABLE runbook_holders ADD COLUMN IF NOT EXISTS heartbeat timestamptz "
    "NOT NULL DEFAULT now()",
)
# Two processes creating the schema at once would collide in the catalog.
SCHEMA_LOCK_KEY = 0x72756E626F6F6B  # "runbook"
HOLDER_WAIT = 1.0  # a winner registers itself just after taking the lock

_INSERT = ("INSERT INTO runbook_events (run_id, seq, ts, type, line, hash) "
           "VALUES (%s, %s, %s, %s, %s, %s)")
# Holder rows whose backend really holds an advisory lock now (rows of dead holders stay
# behind until the next holder overwrites them).
_LIVE_HOLDERS = """
    SELECT h.run_id, h.operator, h.host, h.pid, l.classid::bigint, l.objid::bigint
    FROM runbook_holders h JOIN pg_locks l ON l.pid = h.backend_pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"""
# Holders that were alive when the server last went down, within their lease.
_RESTART_SURVIVORS = """
    SELECT run_id, operator, host, pid FROM runbook_holders
    WHERE heartbeat > now() - make_interval(secs => %s)
      AND heartbeat < pg_postmaster_start_time()"""
_FIRST_AND_LAST = """
    SELECT f.run_id, f.line, l.line
    FROM (SELECT DISTINCT ON (run_id) run_id, line FROM runbook_events {where}
          ORDER BY run_id, seq) f
    JOIN (SELECT DISTINCT ON (run_id) run_id, line FROM runbook_events {where}
          ORDER BY run_id, type IN (%s), seq DESC) l USING (run_id)""" % ", ".join(
    f"'{kind}'" for kind in sorted(AFTERWORDS))  # the last event that is not an afterword


class StateUnavailable(EngineError):
    """The state database cannot be reached or refused a query."""

    exit_code = EXIT_FAILED


def _lock_parts(run_id: str) -> tuple[int, int]:
    """How ``pg_locks`` shows a bigint advisory key: (classid, objid) = (high, low) 32 bits."""
    key = lock_key(run_id)
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


class PostgresStore:
    """Runs as rows of ``runbook_events`` in a shared database (same interface as ``FileStore``).

    ``local_dir`` is this machine's state dir: each run gets a local working
    directory ``local_dir/runs/RUN_ID`` for artifacts; its events live only in
    the table.
    """

    def __init__(self, url: str, local_dir: Path) -> None:
        self.url = url
        self.local_dir = Path(local_dir)
        self._params = self._connect_params(url)
        self._conn = None
        self._schema_ready = False

    def __str__(self) -> str:
        return mask_dsn(self.url)

    # --- the store interface ---

    def create_run(self, run_id: str, operator: str) -> tuple[Journal, "AdvisoryLock"]:
        """Start a new run. An existing run id is refused (held: exit 5)."""
        lock = self._acquire(run_id, operator)
        try:
            if self._exists(run_id):
                raise RunHeld(f"run {run_id} already exists in {self}: "
                              f"use 'runbook resume {run_id}' or another --run-id")
            journal = self._journal(run_id, operator, [], lock)
        except BaseException:
            lock.release()
            raise
        return journal, lock

    def open_run(self, run_id: str, operator: str) -> tuple[Journal, "AdvisoryLock"]:
        """Take an existing run for resuming: lock it, then replay its rows."""
        if not self._exists(run_id):
            raise self._not_found(run_id)
        lock = self._acquire(run_id, operator)
        try:
            check_verified(run_id, self.verify(run_id))  # under the lock, as the events
            events = self.events(run_id)  # read under the lock: every earlier append is in
            _check_contiguous(run_id, events)
            journal = self._journal(run_id, operator, events, lock)
        except BaseException:
            lock.release()
            raise
        return journal, lock

    def events(self, run_id: str) -> list[Event]:
        rows = self._query("SELECT seq, line FROM runbook_events WHERE run_id = %s ORDER BY seq",
                           (run_id,))
        if not rows:
            raise self._not_found(run_id)
        return [self._event(run_id, seq, line) for seq, line in rows]

    def verify(self, run_id: str) -> Verification:
        """Recompute the hash chain over the stored lines; also check the copied columns."""
        rows = self._query("SELECT seq, ts, type, line, hash FROM runbook_events "
                           "WHERE run_id = %s ORDER BY seq", (run_id,))
        if not rows:
            raise self._not_found(run_id)
        bodies = [_loads(line) for _seq, _ts, _type, line, _hash in rows]
        disagreeing = _first_disagreeing_row(run_id, rows, bodies)
        chain = verify_chain([dict(b) if isinstance(b, dict) else b for b in bodies], None,
                             [line.encode() for _seq, _ts, _type, line, _hash in rows])
        if disagreeing is not None and (chain.ok or disagreeing < chain.first_bad_seq):
            head = rows[disagreeing - 2][4] if disagreeing > 1 else GENESIS
            return Verification(False, len(rows), head, disagreeing,
                                "the row's run_id, seq, ts, type or hash column disagrees "
                                "with its hashed line (edited)")
        return chain

    def list_runs(self) -> list[RunSummary]:
        rows = self._query(_FIRST_AND_LAST.format(where=""))
        held = set(self._live_holders())
        found = (self._summary(run_id, first, last, held) for run_id, first, last in rows)
        return sorted((s for s in found if s), key=lambda s: s.started)

    def summary(self, run_id: str) -> RunSummary:
        rows = self._query(_FIRST_AND_LAST.format(where="WHERE run_id = %(run_id)s"),
                           {"run_id": run_id})
        if not rows:
            raise self._not_found(run_id)
        summary = self._summary(run_id, rows[0][1], rows[0][2], set(self._live_holders(run_id)))
        if summary is None:
            raise JournalCorrupt(f"{self}: run {run_id}: unreadable first event "
                                 f"(see 'runbook audit verify {run_id}')")
        return summary

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # --- holding a run ---

    def _acquire(self, run_id: str, operator: str) -> "AdvisoryLock":
        name = f"runbook holder of {run_id}"
        lock = AdvisoryLock(self._connect(name), run_id, lambda: self._connect(name))
        try:
            got = lock.try_acquire(_holder_info(operator))
        except psycopg.Error as exc:
            lock.release()
            raise StateUnavailable(f"cannot lock run {run_id} in {self}: "
                                   f"{sanitize(exc, self.url)}") from None
        if got:
            return lock
        if lock.survivor is not None:
            operator, host, pid = lock.survivor
            raise RunHeld(f"run {run_id} is held by operator {operator} on host {host} "
                          f"(pid {pid}): it was running when the state database restarted "
                          f"and may still be (state {self}; its claim lapses {LEASE:.0f} s "
                          "after its last heartbeat)")
        raise RunHeld(f"run {run_id} is held by {self._describe_holder(run_id)} "
                      f"(state {self})")

    def _describe_holder(self, run_id: str) -> str:
        deadline = time.monotonic() + HOLDER_WAIT
        while True:
            holder = self._live_holders(run_id).get(run_id)
            if holder is not None or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if holder is None:
            return "another process"
        operator, host, pid = holder
        return f"operator {operator} on host {host} (pid {pid})"

    def _live_holders(self, run_id: str | None = None) -> dict[str, tuple[str, str, int]]:
        """{run_id: (operator, host, pid)} of the runs a live process holds now — also a
        holder whose heartbeat was fresh when the server restarted: it is re-taking its
        lock from a new connection (the same lease a newcomer respects)."""
        sql, params = _LIVE_HOLDERS, ()
        if run_id is not None:
            sql, params = sql + " AND h.run_id = %s", (run_id,)
        rows = self._query(sql, params)
        live = {r[0]: (r[1], r[2], r[3]) for r in rows if _lock_parts(r[0]) == (r[4], r[5])}
        survivors = self._query(_RESTART_SURVIVORS + (" AND run_id = %s" if run_id else ""),
                                (LEASE, run_id) if run_id else (LEASE,))
        for run, operator, host, pid in survivors:
            live.setdefault(run, (operator, host, pid))
        return live

    # --- helpers ---

    def _journal(self, run_id: str, operator: str, events: list[Event],
                 lock: "AdvisoryLock") -> Journal:
        directory = secure_run_dir(self.local_dir, run_dir(self.local_dir, run_id), create=True)
        sink = TableSink(lock.connection, run_id, str(self), self.url, lock)
        return Journal(directory, run_id, operator, socket.gethostname(), events, sink=sink)

    def _summary(self, run_id: str, first: str, last: str, held: set) -> RunSummary | None:
        return summary_from(_loads(first), _loads(last), run_id, lambda: run_id in held)

    def _exists(self, run_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM runbook_events WHERE run_id = %s LIMIT 1",
                                (run_id,)))

    def _event(self, run_id: str, seq: int, line: str) -> Event:
        try:
            return Event(**json.loads(line))
        except (ValueError, TypeError):
            raise JournalCorrupt(f"{self}: run {run_id} seq {seq}: unreadable journal line "
                                 f"(see 'runbook audit verify {run_id}')") from None

    def _not_found(self, run_id: str) -> RunNotFound:
        return RunNotFound(f"no run {run_id!r} in {self} (see 'runbook runs')")

    def _query(self, sql: str, params=()) -> list[tuple]:
        conn = self._shared()
        try:
            return conn.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            if conn.broken:
                self._conn = None
            raise StateUnavailable(f"state database {self}: {sanitize(exc, self.url)}") from None

    def _shared(self):
        """The store's connection for reads, opened on first use."""
        if self._conn is None or self._conn.closed:
            self._conn = self._connect("runbook")
        return self._conn

    def _connect(self, application_name: str):
        params = {"application_name": application_name, **self._params}
        try:
            conn = connect(self.url, **params)
        except psycopg.Error as exc:
            raise StateUnavailable(f"cannot connect to the state database {self}: "
                                   f"{sanitize(exc, self.url)}") from None
        try:
            self._ensure_schema(conn)
        except psycopg.Error as exc:
            conn.close()
            raise StateUnavailable(f"cannot create the runbook tables in {self}: "
                                   f"{sanitize(exc, self.url)}") from None
        return conn

    def _ensure_schema(self, conn) -> None:
        if self._schema_ready:
            return
        present = conn.execute(
            "SELECT to_regclass('runbook_events') IS NOT NULL AND EXISTS (SELECT 1 FROM "
            "pg_attribute WHERE attrelid = to_regclass('runbook_holders') "
            "AND attname = 'heartbeat' AND NOT attisdropped)").fetchone()[0]
        if not present:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s::bigint)", (SCHEMA_LOCK_KEY,))
                for statement in SCHEMA:
                    conn.execute(statement)
        self._schema_ready = True

    def _connect_params(self, url: str) -> dict:
        """Defaults the URL does not set (checked now, so a bad URL is exit 2 before any run)."""
        try:
            given = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise UsageError(f"invalid state URL {self} (--state-url, RUNBOOK_STATE_URL): "
                             f"{sanitize(exc, url)}") from None
        return {} if "connect_timeout" in given else {"connect_timeout": 10}


class TableSink:
    """Where a journal's lines go with this store: one committed row per event.

    The connection is autocommit, so each row is committed before ``write``
    returns. After any failure the sink refuses every later write: a writer
    that lost a ``seq`` to another process, or whose last row may or may not
    have been stored, must not go on.
    """

    def __init__(self, connection, run_id: str, where: str, url: str = "",
                 lock: AdvisoryLock | None = None) -> None:
        self.connection = connection
        self.lock = lock
        self.run_id = run_id
        self.where = where  # the store, as shown to people (password masked)
        self._url = url
        self._failure: EngineError | None = None

    def write(self, body: dict, line: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        seq = body["seq"]
        self._check_held(seq)
        row = (body["run_id"], seq, body["ts"], body["type"],
               line.rstrip(b"\n").decode("utf-8"), json.loads(line)["hash"])
        try:
            self.connection.execute(_INSERT, row)
        except pg_errors.UniqueViolation:
            self._failure = RunHeld(f"another process appended seq {seq} to run {self.run_id} "
                                    f"in {self.where}: this process stops and writes nothing more")
            raise self._failure from None
        except psycopg.Error as exc:
            if self.lock is not None and self.connection.broken:
                self.lock.lost = True
                self._check_held(seq)
            self._failure = StateUnavailable(
                f"cannot record event {seq} of run {self.run_id} in {self.where}: "
                f"{sanitize(exc, self._url)}; this process writes nothing more "
                f"(resume the run when the database is back)")
            raise self._failure from None

    def _check_held(self, seq: int) -> None:
        if self.lock is None:
            return
        try:
            self.lock.check()
        except LockLost:
            self._failure = RunHeld(
                f"this process lost its hold on run {self.run_id} in {self.where} (the state "
                f"database restarted or dropped its connection) before writing event {seq}: "
                f"it stops and writes nothing more; resume the run once this process has ended")
            raise self._failure from None

    def close(self) -> None:
        """The connection belongs to the run's lock, which closes it on release."""


def _loads(line: str | None) -> dict | None:
    try:
        return json.loads(line) if line else None
    except ValueError:
        return None


def _check_contiguous(run_id: str, events: list[Event]) -> None:
    for index, event in enumerate(events, 1):
        if event.seq != index:
            raise JournalCorrupt(f"run {run_id}: expected seq {index}, found {event.seq} "
                                 f"(see 'runbook audit verify {run_id}')")


def _first_disagreeing_row(run_id: str, rows: list[tuple], bodies: list) -> int | None:
    """The position (= expected seq) of the first row whose columns differ from its line."""
    for index, ((seq, ts, type_, _line, digest), body) in enumerate(zip(rows, bodies), 1):
        if not isinstance(body, dict):
            continue  # an unreadable line: verify_chain names it
        copied = (body.get("run_id"), body.get("seq"), body.get("ts"), body.get("type"),
                  body.get("hash"))
        if copied != (run_id, seq, ts, type_, digest):
            return index
    return None
