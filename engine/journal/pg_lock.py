"""Holding a shared run in PostgreSQL: an advisory lock that survives nothing but knows it.

A session advisory lock lives and dies with its connection, so a restart of the
state server (or a dropped connection) silently frees the run while its holder
is still running a step. Three rules close that gap:

- the holder's ``runbook_holders`` row carries a random ``token`` and a
  ``heartbeat`` that a watcher thread refreshes every ``HEARTBEAT`` seconds;
- when the watcher finds the lock's connection gone, the lock is *lost*: the
  journal's sink refuses every later write (exit 5, nothing written after the
  loss), and the watcher reconnects and takes the advisory lock again on a
  connection of its own, so no second holder gets the run while this process
  lives (``runbook runs`` keeps showing it running);
- a newcomer that gets the advisory lock still refuses the run when the holder
  row's heartbeat is younger than ``LEASE`` seconds and older than the server's
  start: the holder was alive when the server went down and may not have
  reconnected yet.

A holder killed with the server up frees the run at once (its connection
closes); one killed while the server was down frees it ``LEASE`` seconds later.
"""
from __future__ import annotations

import hashlib
import secrets
import threading
from typing import Callable

import psycopg

HEARTBEAT = 1.0
LEASE = 30.0
# The server notices a vanished holder (a machine gone) within about a minute
# and drops its lock, instead of after the OS default of hours.
LOCK_SESSION_SETTINGS = ("SET tcp_keepalives_idle = 30", "SET tcp_keepalives_interval = 10",
                         "SET tcp_keepalives_count = 3")

UPSERT_HOLDER = """
    INSERT INTO runbook_holders (run_id, operator, host, pid, backend_pid, token, heartbeat)
    VALUES (%(run_id)s, %(operator)s, %(host)s, %(pid)s, pg_backend_pid(), %(token)s, now())
    ON CONFLICT (run_id) DO UPDATE SET operator = EXCLUDED.operator, host = EXCLUDED.host,
        pid = EXCLUDED.pid, backend_pid = EXCLUDED.backend_pid, since = now(),
        token = EXCLUDED.token, heartbeat = now()"""
_BEAT = ("UPDATE runbook_holders SET heartbeat = now(), backend_pid = pg_backend_pid() "
         "WHERE run_id = %s AND token = %s")
# A holder that was alive when the server last went down and may not be back yet.
_SURVIVOR = """
    SELECT operator, host, pid FROM runbook_holders
    WHERE run_id = %s AND heartbeat > now() - make_interval(secs => %s)
      AND heartbeat < pg_postmaster_start_time()"""


def lock_key(run_id: str) -> int:
    """The run's advisory lock key: 64 bits of a hash of its id."""
    digest = hashlib.sha256(b"runbook-engine run " + run_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLock:
    """One run held across machines: a session advisory lock on a connection of its own,
    a ``runbook_holders`` row naming the holder, and a watcher that notices the lock's loss.
    ``release()`` (or the end of the process or connection) gives the run back."""

    def __init__(self, connection, run_id: str, reconnect: Callable[[], object] | None = None):
        self.connection = connection
        self.run_id = run_id
        self.key = lock_key(run_id)
        self.token = secrets.token_hex(16)
        self.lost = False
        self.survivor: tuple | None = None  # (operator, host, pid) of a holder that may live
        self._reconnect = reconnect
        self._watch_conn = None  # where the watcher re-took the lock after a loss
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def try_acquire(self, holder: dict) -> bool:
        """True when this process now holds the run; False (connection closed) when another does."""
        if not self._take(self.connection):
            self._close()
            return False
        self.survivor = self.connection.execute(_SURVIVOR, (self.run_id, LEASE)).fetchone()
        if self.survivor is not None:
            self.connection.execute("SELECT pg_advisory_unlock(%s::bigint)", (self.key,))
            self._close()
            return False
        self.connection.execute(UPSERT_HOLDER, {"run_id": self.run_id, "token": self.token,
                                                **holder})
        if self._reconnect is not None:
            self._thread = threading.Thread(target=self._watch, daemon=True,
                                            name=f"runbook lock {self.run_id}")
            self._thread.start()
        return True

    def _take(self, conn) -> bool:
        for setting in LOCK_SESSION_SETTINGS:
            conn.execute(setting)
        return conn.execute("SELECT pg_try_advisory_lock(%s::bigint)", (self.key,)).fetchone()[0]

    def _watch(self) -> None:
        """Refresh the heartbeat; on a lost connection mark the lock lost and keep the run
        held from a new connection for as long as this process lives."""
        while not self._stop.wait(HEARTBEAT):
            conn = self._watch_conn if self.lost else self.connection
            try:
                if conn is None:
                    conn = self._rejoin()
                conn.execute(_BEAT, (self.run_id, self.token))
            except (psycopg.Error, OSError):
                self.lost = True
                self._drop_watch_conn()
            except Exception:  # a watcher must never kill the run; the sink still checks
                self.lost = True

    def _rejoin(self):
        conn = self._reconnect()
        self._watch_conn = conn
        self._take(conn)  # False only when a newcomer ignored the lease: nothing more to do
        return conn

    def _drop_watch_conn(self) -> None:
        if self._watch_conn is not None:
            try:
                self._watch_conn.close()
            except Exception:  # already dead
                pass
            self._watch_conn = None

    def check(self) -> None:
        """Raise when the lock was lost (before a write)."""
        if self.lost or self.connection is None or self.connection.broken:
            self.lost = True
            raise LockLost(self.run_id)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for conn in (self._watch_conn, self.connection):
            if conn is None or conn.closed or conn.broken:
                continue
            try:
                conn.execute("DELETE FROM runbook_holders WHERE run_id = %s AND token = %s",
                             (self.run_id, self.token))
                conn.execute("SELECT pg_advisory_unlock(%s::bigint)", (self.key,))
                break
            except psycopg.Error:
                continue  # a lost connection has already dropped the lock
        self._drop_watch_conn()
        self._close()

    def _close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class LockLost(Exception):
    """Raised by ``AdvisoryLock.check``; the sink turns it into ``RunHeld`` (exit 5)."""
