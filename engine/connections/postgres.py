"""PostgreSQL: sessions, queries and the client and server programs.

Shared by the ``postgres.*`` actions, the PostgreSQL journal store and the lab.
psycopg is imported inside the functions that talk to a server, never at module
level: ``runbook validate`` imports the actions only to read their schemas.

Each run keeps one autocommit connection per DSN (:func:`session_for`, through
``ctx.connection``), opened lazily on first use and reopened if the server
dropped it. Passwords never appear in an error: every DSN shown goes through
``mask_dsn``, every server or tool message through ``sanitize``. Client
programs receive the password through ``PGPASSWORD``, never in argv, where any
local user could read it with ``ps``.

``ctx`` below is the run's ``engine.actions.base.Context``: its ``connection()``
cache and ``time_left()`` deadline.
"""
from __future__ import annotations

import glob
import math
import os
import re
import shutil
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from engine.connections.local import Completed, run_process
from engine.errors import ActionError
from engine.secrets import mask_dsn, sanitize

__all__ = ["PgSession", "session_for", "with_connection", "connect", "fetch_one", "fetch_value",
           "connect_timeout", "statement_timeout_ms", "server_address", "failure",
           "find_pg_tool", "pg_bin_dirs", "run_pg_tool", "split_password",
           "DEFAULT_CONNECT_TIMEOUT", "INSTALL_HINT"]

DEFAULT_CONNECT_TIMEOUT = 10
INSTALL_HINT = "install the PostgreSQL client tools (apt-get install postgresql-client)"


def failure(what: str, exc: BaseException, dsn: str) -> ActionError:
    """An ActionError for ``exc`` whose text cannot leak the DSN's password."""
    detail = sanitize(str(exc).strip(), dsn) or type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        detail = f"{detail} (SQLSTATE {sqlstate})"
    return ActionError(f"{what}: {detail}")


# --------------------------------------------------------------------------
# Connections and queries
# --------------------------------------------------------------------------

def connect(dsn: str, **params: Any):
    """A new autocommit connection to ``dsn`` (psycopg's errors reach the caller)."""
    import psycopg

    return psycopg.connect(dsn, autocommit=True, **params)


def fetch_one(conn, sql: str, params: Any = None) -> dict:
    """The first row of ``sql`` as a dict of column -> value."""
    cur = conn.execute(sql, params)
    row = cur.fetchone()
    names = [c.name for c in cur.description or []]
    return dict(zip(names, row)) if row else {}


def fetch_value(conn, sql: str, params: Any = None) -> Any:
    """The first column of the first row of ``sql`` (None without rows)."""
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def server_address(dsn: str) -> str:
    """``host:port`` the DSN points at, for messages (no connection made)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return mask_dsn(dsn)
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}"


class PgSession:
    """One autocommit connection to one DSN, shared by the steps of a run.

    Opened on first use (so the context's cache lock is never held while a
    server is slow to answer), reopened when the server dropped it, and used
    by one step at a time: a connection holds one transaction at a time.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._conn = None
        self._lock = threading.Lock()

    def _is_usable(self) -> bool:
        return self._conn is not None and not self._conn.closed and not self._conn.broken

    def _open(self, timeout: float):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        extra: dict[str, Any] = {"connect_timeout": max(2, int(math.ceil(timeout)))}
        try:
            if "application_name" not in conninfo_to_dict(self.dsn):
                extra["application_name"] = "runbook"
            return connect(self.dsn, **extra)
        except psycopg.Error as exc:
            raise failure(f"cannot connect to {mask_dsn(self.dsn)}", exc, self.dsn) from None

    @contextmanager
    def connection(self, timeout: float, *, fresh: bool = False) -> Iterator[Any]:
        """The live connection, held exclusively for the ``with`` block."""
        with self._lock:
            if fresh or not self._is_usable():
                self.close_quietly()
                self._conn = self._open(timeout)
            yield self._conn

    def was_open(self) -> bool:
        """True when the next use reuses an earlier connection (which may have died)."""
        return self._is_usable()

    def close_quietly(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # an already-dead connection has nothing left to close
                pass
        self._conn = None

    def close(self) -> None:
        """Close the connection (called by ``Context.close()`` at the end of a run)."""
        with self._lock:
            self.close_quietly()


def session_for(ctx, dsn: str) -> PgSession:
    """The run's shared session for ``dsn``."""
    return ctx.connection(("postgres", dsn), lambda: PgSession(dsn))


_DATABASE_GOES = re.compile(
    r'\b(?:DROP\s+DATABASE(?:\s+IF\s+EXISTS)?|ALTER\s+DATABASE)\s+("(?:[^"]|"")+"|[\w$]+)',
    re.IGNORECASE)


def release_sessions_for(ctx, sql: str) -> None:
    """Close the run's own idle sessions to a database that ``sql`` drops or alters: the
    engine must never be the "other user" that keeps ``DROP DATABASE`` from running.
    They reopen by themselves when a later step needs them."""
    names = {_unquote_ident(m.group(1)) for m in _DATABASE_GOES.finditer(sql)}
    if not names:
        return
    from psycopg.conninfo import conninfo_to_dict

    for session in ctx.cached("postgres"):
        try:
            dbname = conninfo_to_dict(session.dsn).get("dbname")
        except Exception:  # a DSN psycopg cannot parse has no session open anyway
            continue
        if dbname in names:
            session.close()


def _unquote_ident(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def connect_timeout(ctx, wanted: float = DEFAULT_CONNECT_TIMEOUT) -> float:
    """Seconds to wait for a connection: ``wanted``, cut to what the step has left."""
    return ctx.time_left(wanted)


def statement_timeout_ms(ctx) -> int | None:
    """What the step has left, in milliseconds, for ``statement_timeout`` (None: no deadline)."""
    left = ctx.time_left()
    return None if left is None else max(1, int(left * 1000))


def with_connection(ctx, dsn: str, work: Callable[[Any], Any], *, what: str,
                    read_only: bool, timeout: float | None = None) -> Any:
    """``work(conn)`` on the run's connection to ``dsn``; psycopg errors become ActionErrors.

    A read-only ``work`` that fails because a reused connection had died (the
    server restarted, a failover happened) is retried once on a new one; a
    mutating one is not, since whether it took effect is unknown. ``timeout``
    is the connect timeout (default: :func:`connect_timeout`).
    """
    import psycopg

    session = session_for(ctx, dsn)
    timeout = timeout if timeout is not None else connect_timeout(ctx)
    reused = session.was_open()
    try:
        with session.connection(timeout) as conn:
            return work(conn)
    except psycopg.OperationalError as exc:
        if not (read_only and reused):
            raise failure(what, exc, dsn) from None
    except psycopg.Error as exc:
        raise failure(what, exc, dsn) from None
    try:
        with session.connection(timeout, fresh=True) as conn:
            return work(conn)
    except psycopg.Error as exc:
        raise failure(what, exc, dsn) from None


# --------------------------------------------------------------------------
# Programs
# --------------------------------------------------------------------------

def _pg_config_bindir() -> str | None:
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    try:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(p) for p in re.findall(r"\d+", version)) or (0,)


def pg_bin_dirs() -> list[str]:
    """Directories holding PostgreSQL programs: ``pg_config --bindir``, then
    ``/usr/lib/postgresql/*/bin`` newest first (where Debian keeps server programs)."""
    dirs = [_pg_config_bindir()]
    dirs += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    unique: list[str] = []
    for d in dirs:
        if d and os.path.isdir(d) and d not in unique:
            unique.append(d)
    return unique


def find_pg_tool(name: str, *, prefer_path: bool = True) -> str:
    """Absolute path of PostgreSQL program ``name``: PATH, then :func:`pg_bin_dirs`
    (or the other way round with ``prefer_path=False``, to keep server programs
    of one installation together).

    Raises ActionError naming the package to install when it is nowhere.
    """
    installed = [os.path.join(d, name) for d in pg_bin_dirs()]
    on_path = [shutil.which(name)]
    for candidate in (on_path + installed) if prefer_path else (installed + on_path):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ActionError(f"{name} not found on PATH, in `pg_config --bindir` or "
                      f"/usr/lib/postgresql/*/bin: {INSTALL_HINT}")


def split_password(dsn: str) -> tuple[str, dict[str, str]]:
    """(``dsn`` without its password, extra env carrying it as PGPASSWORD) for a client program."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(dsn)
    except Exception as exc:
        raise failure("invalid dsn", exc, dsn) from None
    password = params.pop("password", None)
    env = {"PGPASSWORD": str(password)} if password else {}
    return make_conninfo("", **{k: str(v) for k, v in params.items()}), env


def run_pg_tool(tool: str, args: list[str], dsn: str, ctx) -> Completed:
    """Run PostgreSQL client ``tool`` with ``args`` (``{dsn}`` is replaced by the
    password-less DSN) within the step's deadline; rc != 0 is an ActionError."""
    safe_dsn, env = split_password(dsn)
    argv = [find_pg_tool(tool)] + [safe_dsn if a == "{dsn}" else a for a in args]
    done = run_process(argv, ctx, env=env)
    if done.rc != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-5:]) or f"exit code {done.rc}"
        raise ActionError(f"{tool} failed (rc={done.rc}): {sanitize(tail, dsn)}")
    return done
