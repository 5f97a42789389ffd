"""PostgreSQL actions: ping, query, execute, dump, restore, replication, promote.

psycopg is imported inside the functions that talk to a server, never at module
level: ``runbook validate`` imports this module only to read ``args_schema``.

Each run keeps one autocommit connection per DSN (through ``ctx.connection``),
opened lazily on first use and reopened if the server dropped it.

Passwords come from the DSN (rendered from inventory secrets), ``PGPASSWORD``
or a passfile. They never appear in a plan, a result, a message or an
exception: every DSN shown goes through :func:`mask_dsn`, every server or tool
message through :func:`sanitize`. Client programs (``pg_dump``,
``pg_restore``) receive the password through ``PGPASSWORD``, never in argv,
where any local user could read it with ``ps``.
"""
from __future__ import annotations

import glob
import hashlib
import math
import os
import re
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from functools import partial
from datetime import date, datetime, time as dt_time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote

from engine.actions.base import Action, ActionError, Context, Result
from engine.connections.local import Completed, run_process

__all__ = [
    "Ping", "Query", "Execute", "Dump", "Restore", "Replication", "Promote",
    "mask_dsn", "sanitize", "find_pg_tool", "pg_bin_dirs", "json_safe",
]

MASK = "***"
DEFAULT_CONNECT_TIMEOUT = 10
INSTALL_HINT = "install the PostgreSQL client tools (apt-get install postgresql-client)"

# --------------------------------------------------------------------------
# Keeping passwords out of everything we show
# --------------------------------------------------------------------------

# The password runs to the *last* '@': a literal '@' in a password is common,
# and masking too much (e.g. a host) is harmless while masking too little leaks.
_URL_PASSWORD = re.compile(
    r"^(?P<head>[a-z][a-z0-9+.-]*://[^:@/?#]*):(?P<password>.*)@(?P<tail>[^@]*)$",
    re.IGNORECASE | re.DOTALL)
_URL_QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)(?P<password>[^&#]*)", re.IGNORECASE)
_KV_PASSWORD = re.compile(
    r"(?P<key>\bpassword\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|[^\s']\S*)", re.IGNORECASE)


def _is_url(dsn: str) -> bool:
    return bool(re.match(r"^postgres(?:ql)?://", dsn, re.IGNORECASE))


def mask_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***`` (URL or key=value form)."""
    if not isinstance(dsn, str):
        return MASK
    if _is_url(dsn):
        masked = _URL_PASSWORD.sub(rf"\g<head>:{MASK}@\g<tail>", dsn)
        return _URL_QUERY_PASSWORD.sub(rf"\g<key>{MASK}", masked)
    return _KV_PASSWORD.sub(rf"\g<key>{MASK}", dsn)


def _dsn_passwords(dsn: str) -> set[str]:
    """Every spelling of the password(s) that ``dsn`` carries: raw, decoded, unquoted."""
    found: set[str] = set()
    if _is_url(dsn):
        match = _URL_PASSWORD.match(dsn)
        if match:
            found.add(match["password"])
        found.update(m["password"] for m in _URL_QUERY_PASSWORD.finditer(dsn))
        found |= {unquote(p) for p in found}
    else:
        for m in _KV_PASSWORD.finditer(dsn):
            value = m["password"]
            found.add(value)
            if value.startswith("'"):
                found.add(re.sub(r"\\(.)", r"\1", value[1:-1]))
    return {p for p in found if p}


def sanitize(text: str, dsn: str = "") -> str:
    """``text`` (a server or tool message) with the DSN masked and any password removed."""
    text = str(text)
    if dsn:
        text = text.replace(dsn, mask_dsn(dsn))
        secrets = _dsn_passwords(dsn)
    else:
        secrets = set()
    if os.environ.get("PGPASSWORD"):
        secrets.add(os.environ["PGPASSWORD"])
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return _KV_PASSWORD.sub(rf"\g<key>{MASK}", text)


def _fail(what: str, exc: BaseException, dsn: str) -> ActionError:
    """An ActionError for ``exc`` whose text cannot leak the DSN's password."""
    detail = sanitize(str(exc).strip(), dsn) or type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        detail = f"{detail} (SQLSTATE {sqlstate})"
    return ActionError(f"{what}: {detail}")


def _one_line(text: str, limit: int = 100) -> str:
    """``text`` with whitespace collapsed, cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --------------------------------------------------------------------------
# JSON-safe values
# --------------------------------------------------------------------------

def _json_safe_decimal(value: Decimal) -> Any:
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value():
        return int(value)
    return float(value)


_SCALAR_CONVERTERS: list[tuple[type | tuple[type, ...], Callable[[Any], Any]]] = [
    (bool, lambda v: v),
    (int, lambda v: v),
    (float, lambda v: v if math.isfinite(v) else str(v)),
    (str, lambda v: v),
    (Decimal, _json_safe_decimal),
    ((datetime, date, dt_time), lambda v: v.isoformat()),
    (timedelta, lambda v: v.total_seconds()),
    ((bytes, bytearray, memoryview), lambda v: bytes(v).hex()),
]


def json_safe(value: Any) -> Any:
    """``value`` as something ``json.dumps`` accepts without losing its meaning.

    Decimals become int when integral else float; dates and times ISO 8601
    strings; intervals seconds; bytea hex; UUIDs, inets, ranges and anything
    else ``str()``.
    """
    if value is None:
        return None
    for types, convert in _SCALAR_CONVERTERS:
        if isinstance(value, types):
            return convert(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(v) for v in value]
    return str(value)


# --------------------------------------------------------------------------
# Client programs
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


def _split_password(dsn: str) -> tuple[str, dict[str, str]]:
    """(``dsn`` without its password, extra env carrying it as PGPASSWORD) for a client program."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(dsn)
    except Exception as exc:
        raise _fail("invalid dsn", exc, dsn) from None
    password = params.pop("password", None)
    env = {"PGPASSWORD": str(password)} if password else {}
    return make_conninfo("", **{k: str(v) for k, v in params.items()}), env


def run_pg_tool(tool: str, args: list[str], dsn: str, ctx: Context) -> Completed:
    """Run PostgreSQL client ``tool`` with ``args`` (``{dsn}`` is replaced by the
    password-less DSN) within the step's deadline; rc != 0 is an ActionError."""
    safe_dsn, env = _split_password(dsn)
    argv = [find_pg_tool(tool)] + [safe_dsn if a == "{dsn}" else a for a in args]
    done = run_process(argv, ctx, env=env)
    if done.rc != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-5:]) or f"exit code {done.rc}"
        raise ActionError(f"{tool} failed (rc={done.rc}): {sanitize(tail, dsn)}")
    return done


# --------------------------------------------------------------------------
# Connections
# --------------------------------------------------------------------------

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

    def _open(self, connect_timeout: float):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        extra: dict[str, Any] = {"autocommit": True,
                                 "connect_timeout": max(2, int(math.ceil(connect_timeout)))}
        try:
            if "application_name" not in conninfo_to_dict(self.dsn):
                extra["application_name"] = "runbook"
            return psycopg.connect(self.dsn, **extra)
        except psycopg.Error as exc:
            raise _fail(f"cannot connect to {mask_dsn(self.dsn)}", exc, self.dsn) from None

    @contextmanager
    def connection(self, connect_timeout: float, *, fresh: bool = False) -> Iterator[Any]:
        """The live connection, held exclusively for the ``with`` block."""
        with self._lock:
            if fresh or not self._is_usable():
                self.close_quietly()
                self._conn = self._open(connect_timeout)
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


def session_for(ctx: Context, dsn: str) -> PgSession:
    """The run's shared session for ``dsn``."""
    return ctx.connection(("postgres", dsn), lambda: PgSession(dsn))


def _connect_timeout(ctx: Context, wanted: float = DEFAULT_CONNECT_TIMEOUT) -> float:
    """Seconds to wait for a connection: ``wanted``, cut to what the step has left."""
    return ctx.time_left(wanted)


def with_connection(ctx: Context, dsn: str, work: Callable[[Any], Any], *, what: str,
                    read_only: bool, connect_timeout: float | None = None) -> Any:
    """``work(conn)`` on the run's connection to ``dsn``; psycopg errors become ActionErrors.

    A read-only ``work`` that fails because a reused connection had died (the
    server restarted, a failover happened) is retried once on a new one; a
    mutating one is not, since whether it took effect is unknown.
    """
    import psycopg

    session = session_for(ctx, dsn)
    timeout = connect_timeout if connect_timeout is not None else _connect_timeout(ctx)
    reused = session.was_open()
    try:
        with session.connection(timeout) as conn:
            return work(conn)
    except psycopg.OperationalError as exc:
        if not (read_only and reused):
            raise _fail(what, exc, dsn) from None
    except psycopg.Error as exc:
        raise _fail(what, exc, dsn) from None
    try:
        with session.connection(timeout, fresh=True) as conn:
            return work(conn)
    except psycopg.Error as exc:
        raise _fail(what, exc, dsn) from None


def _statement_timeout_ms(ctx: Context) -> int | None:
    left = ctx.time_left()
    return None if left is None else max(1, int(left * 1000))


def _fetch_one(conn, sql: str, params: Any = None) -> dict:
    """The first row of ``sql`` as a dict of column -> value."""
    cur = conn.execute(sql, params)
    row = cur.fetchone()
    names = [c.name for c in cur.description or []]
    return dict(zip(names, row)) if row else {}


def _server_address(dsn: str) -> str:
    """``host:port`` the DSN points at, for messages (no connection made)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return mask_dsn(dsn)
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}"


# --------------------------------------------------------------------------
# Schemas
# --------------------------------------------------------------------------

def _schema(properties: dict, required: list[str], **extra: Any) -> dict:
    return {"type": "object", "additionalProperties": False,
            "required": required, "properties": properties, **extra}


DSN_PROP = {"type": "string", "minLength": 1,
            "description": "libpq connection string or postgresql:// URL (password masked when shown)"}
SQL_PROP = {"type": "string", "minLength": 1, "description": "SQL text; use %s or %(name)s placeholders for params"}
PARAMS_PROP = {"type": ["array", "object"],
               "description": "values for the SQL placeholders: a list for %s, a mapping for %(name)s"}


# --------------------------------------------------------------------------
# Actions
# --------------------------------------------------------------------------

class Ping(Action):
    """Connect to a PostgreSQL server and report its version and recovery state."""

    name = "postgres.ping"
    mutates = False
    args_schema = _schema({
        "dsn": DSN_PROP,
        "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 5,
                    "description": "seconds to wait for the connection"},
    }, ["dsn"])

    def plan(self, args: dict, ctx: Context) -> str:
        return f"ping {mask_dsn(args['dsn'])}"

    def run(self, args: dict, ctx: Context) -> Result:
        dsn = args["dsn"]
        timeout = float(args.get("timeout", 5))
        row = with_connection(
            ctx, dsn, lambda conn: _fetch_one(conn, "SELECT current_setting('server_version') AS v, "
                                                    "pg_is_in_recovery() AS r"),
            what=f"ping {mask_dsn(dsn)}", read_only=True,
            connect_timeout=_connect_timeout(ctx, timeout))
        version = str(row["v"]).split()[0]
        role = "replica (in recovery)" if row["r"] else "primary"
        return Result(ok=True, changed=False,
                      data={"ok": True, "server_version": version, "in_recovery": bool(row["r"])},
                      message=f"{_server_address(dsn)} answers: PostgreSQL {version}, {role}")


class Query(Action):
    """Run a SELECT in a READ ONLY transaction and return its rows (never writes)."""

    name = "postgres.query"
    mutates = False
    args_schema = _schema({
        "dsn": DSN_PROP,
        "sql": SQL_PROP,
        "params": PARAMS_PROP,
        "max_rows": {"type": "integer", "minimum": 1, "default": 1000,
                     "description": "keep at most this many rows in the result (rowcount still counts all)"},
    }, ["dsn", "sql"])

    def plan(self, args: dict, ctx: Context) -> str:
        return f"query {mask_dsn(args['dsn'])} (read-only): {_one_line(args['sql'])}"

    def run(self, args: dict, ctx: Context) -> Result:
        dsn, max_rows = args["dsn"], int(args.get("max_rows", 1000))
        work = partial(_read_only_rows, sql=args["sql"], params=args.get("params"),
                       max_rows=max_rows, timeout_ms=_statement_timeout_ms(ctx))
        columns, rows, total = with_connection(ctx, dsn, work, what="query failed", read_only=True)
        data = {"rows": [dict(zip(columns, json_safe(list(r)))) for r in rows],
                "rowcount": total, "columns": columns, "truncated": total > len(rows)}
        return Result(ok=True, changed=False, data=data,
                      message=f"{total} row{'s' if total != 1 else ''}")


def _read_only_rows(conn, sql: str, params: Any, max_rows: int,
                    timeout_ms: int | None) -> tuple[list[str], list[tuple], int]:
    """(columns, first ``max_rows`` rows, total row count) of ``sql`` run read-only.

    The READ ONLY transaction makes the server refuse any data write. The
    statement goes through the extended protocol (``stream``), which accepts a
    single statement only, so ``COMMIT; INSERT ...`` cannot leave the
    read-only transaction either. Functions whose effects lie outside the
    data (``pg_terminate_backend``, ``dblink``) are not writes and still run:
    give queries a least-privileged role where that matters.
    """
    import psycopg

    # leaving the block by an exception rolls back, undoing even a session-level SET
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        if timeout_ms is not None:
            conn.execute("SELECT set_config('statement_timeout', %s, true)", [f"{timeout_ms}ms"])
        cur = conn.cursor()
        rows: list[tuple] = []
        total = 0
        try:
            for row in cur.stream(sql, params):
                total += 1
                if len(rows) < max_rows:
                    rows.append(row)
        except psycopg.ProgrammingError as exc:
            if exc.sqlstate is None:  # psycopg's own complaint: the statement returned no rows
                raise ActionError(f"query failed: {_one_line(sql, 60)!r} returns no rows; postgres.query "
                                  f"runs one read-only statement that does (SELECT, SHOW, EXPLAIN ...) "
                                  f"— use postgres.execute for anything else") from None
            raise
        columns = [c.name for c in cur.description or []]
    return columns, rows, total


class Execute(Action):
    """Run a SQL statement that changes the database (DML, DDL) and report the rows affected."""

    name = "postgres.execute"
    mutates = True
    args_schema = _schema({"dsn": DSN_PROP, "sql": SQL_PROP, "params": PARAMS_PROP}, ["dsn", "sql"])

    def plan(self, args: dict, ctx: Context) -> str:
        shown = f"execute on {mask_dsn(args['dsn'])}: {_one_line(args['sql'])}"
        params = args.get("params")
        # parameter values may be secrets (ALTER ROLE ... PASSWORD %s): show only how many
        return f"{shown} ({len(params)} params)" if params else shown

    def run(self, args: dict, ctx: Context) -> Result:
        work = partial(_execute, sql=args["sql"], params=args.get("params"),
                       timeout_ms=_statement_timeout_ms(ctx))
        rowcount, status = with_connection(ctx, args["dsn"], work, what="execute failed", read_only=False)
        changed = not _reports_no_change(status)
        return Result(ok=True, changed=changed, data={"rowcount": rowcount, "status": status},
                      message=status or "done")


def _execute(conn, sql: str, params: Any, timeout_ms: int | None) -> tuple[int, str]:
    """(rowcount, server status such as ``UPDATE 3``) of ``sql`` run in autocommit."""
    if timeout_ms is not None:
        conn.execute("SELECT set_config('statement_timeout', %s, false)", [f"{timeout_ms}ms"])
    try:
        cur = conn.execute(sql, params)
        return cur.rowcount, cur.statusmessage or ""
    finally:
        if timeout_ms is not None and not conn.broken:
            conn.execute("RESET statement_timeout")


def _reports_no_change(status: str) -> bool:
    """True for statuses like ``UPDATE 0``, ``DELETE 0``, ``INSERT 0 0``."""
    verb = status.split(" ", 1)[0]
    return verb in {"UPDATE", "DELETE", "INSERT", "MERGE"} and status.endswith(" 0")


DUMP_FORMATS = {"custom": "c", "plain": "p", "directory": "d"}


class Dump(Action):
    """Dump a database with pg_dump and write a sha256sum file next to it."""

    name = "postgres.dump"
    mutates = True
    args_schema = _schema({
        "dsn": DSN_PROP,
        "path": {"type": "string", "minLength": 1,
                 "description": "file to write (a directory for format: directory); PATH.sha256 is written too"},
        "format": {"enum": list(DUMP_FORMATS), "default": "custom",
                   "description": "custom (pg_restore archive), plain (SQL text) or directory (parallel)"},
        "jobs": {"type": "integer", "minimum": 1, "default": 1,
                 "description": "parallel dump jobs; more than 1 needs format: directory"},
    }, ["dsn", "path"],
        **{"if": {"required": ["jobs"], "properties": {"jobs": {"minimum": 2}}},
           "then": {"required": ["format"], "properties": {"format": {"const": "directory"}}}})

    def plan(self, args: dict, ctx: Context) -> str:
        fmt = args.get("format", "custom")
        size = _database_size(ctx, args["dsn"])
        return f"pg_dump {mask_dsn(args['dsn'])}{size} -> {args['path']} ({fmt}) + .sha256"

    def run(self, args: dict, ctx: Context) -> Result:
        path = Path(args["path"])
        fmt, jobs = args.get("format", "custom"), int(args.get("jobs", 1))
        if jobs > 1 and fmt != "directory":
            raise ActionError("jobs > 1 needs format: directory (pg_dump dumps in parallel only into a directory)")
        if not path.parent.is_dir():
            raise ActionError(f"cannot write {path}: directory {path.parent} does not exist")
        started = time.monotonic()
        _dump_atomically(args["dsn"], path, fmt, jobs, ctx)
        digest, size = write_checksum_file(path)
        return Result(ok=True, changed=True,
                      data={"path": str(path), "sha256": digest, "bytes": size,
                            "format": fmt, "elapsed": round(time.monotonic() - started, 3)},
                      message=f"dumped {_human_bytes(size)} to {path} (sha256 {digest[:12]}…)")


def _database_size(ctx: Context, dsn: str) -> str:
    """`` (12 MB)``: the database's size for a plan, or '' when it cannot be looked up."""
    try:
        row = with_connection(ctx, dsn, lambda c: _fetch_one(
            c, "SELECT pg_size_pretty(pg_database_size(current_database())) AS s"),
            what="size look-up", read_only=True)
        return f" ({row['s']})"
    except ActionError:
        return ""


def _dump_atomically(dsn: str, path: Path, fmt: str, jobs: int, ctx: Context) -> None:
    """pg_dump into a temporary name, renamed to ``path`` only when complete,
    so a failed or killed dump never looks like a good one."""
    unfinished = path.with_name(f".{path.name}.partial")
    _remove(unfinished)
    args = ["-d", "{dsn}", "-F", DUMP_FORMATS[fmt], "-f", str(unfinished), "--no-password"]
    if jobs > 1:
        args += ["-j", str(jobs)]
    try:
        run_pg_tool("pg_dump", args, dsn, ctx)
        if path.is_dir():  # os.replace overwrites a file atomically, but not a directory
            _remove(path)
        os.replace(unfinished, path)
    finally:
        _remove(unfinished)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksum_lines(path: Path) -> list[tuple[str, str]]:
    """(sha256, name relative to path's parent) for the dump file, or each file of a directory dump."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return [(_sha256_of_file(f), f.relative_to(path.parent).as_posix()) for f in files]
    return [(_sha256_of_file(path), path.name)]


def _dump_digest(lines: list[tuple[str, str]]) -> str:
    """One sha256 for the dump: the file's own, or for a directory that of its checksum list."""
    if len(lines) == 1 and "/" not in lines[0][1]:
        return lines[0][0]
    return hashlib.sha256(_format_checksums(lines).encode()).hexdigest()


def _format_checksums(lines: list[tuple[str, str]]) -> str:
    return "".join(f"{digest}  {name}\n" for digest, name in lines)


def checksum_path(path: Path) -> Path:
    """Where the checksum of dump ``path`` lives: ``PATH.sha256``."""
    return path.with_name(path.name + ".sha256")


def write_checksum_file(path: Path) -> tuple[str, int]:
    """Write ``PATH.sha256`` in sha256sum format (``sha256sum -c`` verifies it from
    the dump's directory); return (digest, size in bytes)."""
    lines = _checksum_lines(path)
    target = checksum_path(path)
    tmp = target.with_name(f".{target.name}.partial")
    tmp.write_text(_format_checksums(lines))
    os.replace(tmp, target)
    return _dump_digest(lines), _dump_size(path)


def _dump_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def verify_checksum_file(path: Path) -> str:
    """Check dump ``path`` against ``PATH.sha256``; return its digest, raise ActionError otherwise."""
    target = checksum_path(path)
    if not target.is_file():
        raise ActionError(f"refusing to restore {path}: checksum file {target} is missing "
                          f"(set verify_checksum: false to restore an unverified dump)")
    expected = _parse_checksum_file(target)
    actual = dict((name, digest) for digest, name in _checksum_lines(path))
    if expected != actual:
        raise ActionError(f"refusing to restore {path}: it does not match {target.name} "
                          f"({_describe_mismatch(expected, actual)}) — the dump is corrupt or was changed")
    return _dump_digest([(d, n) for n, d in sorted(actual.items())])


def _parse_checksum_file(target: Path) -> dict[str, str]:
    expected: dict[str, str] = {}
    for line in target.read_text().splitlines():
        match = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line.strip())
        if match:
            expected[match[2]] = match[1].lower()
    return expected


def _describe_mismatch(expected: dict[str, str], actual: dict[str, str]) -> str:
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if want != got:
            return f"{name}: expected {want or 'no entry'}, got {got or 'no file'}"
    return "no entries"


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


class Restore(Action):
    """Restore a pg_dump archive with pg_restore after checking its sha256 file."""

    name = "postgres.restore"
    mutates = True
    args_schema = _schema({
        "dsn": DSN_PROP,
        "path": {"type": "string", "minLength": 1,
                 "description": "pg_dump archive (custom format file or directory) to restore"},
        "clean": {"type": "boolean", "default": False,
                  "description": "drop existing objects first (pg_restore --clean --if-exists)"},
        "jobs": {"type": "integer", "minimum": 1, "default": 1, "description": "parallel restore jobs"},
        "verify_checksum": {"type": "boolean", "default": True,
                            "description": "refuse the dump unless it matches PATH.sha256"},
        "no_owner": {"type": "boolean", "default": False,
                     "description": "do not restore object ownership (restoring as another role)"},
    }, ["dsn", "path"])

    def plan(self, args: dict, ctx: Context) -> str:
        path = Path(args["path"])
        how = "--clean " if args.get("clean") else ""
        check = ", checksum verified first" if args.get("verify_checksum", True) else ", checksum NOT verified"
        return f"pg_restore {how}{path} ({_archive_summary(path, args['dsn'], ctx)}) into {mask_dsn(args['dsn'])}{check}"

    def run(self, args: dict, ctx: Context) -> Result:
        path = Path(args["path"])
        if not path.exists():
            raise ActionError(f"cannot restore {path}: no such file or directory")
        digest = verify_checksum_file(path) if args.get("verify_checksum", True) else None
        tables = count_archive_tables(path, args["dsn"], ctx)
        started = time.monotonic()
        run_pg_tool("pg_restore", _restore_args(args), args["dsn"], ctx)
        elapsed = round(time.monotonic() - started, 3)
        return Result(ok=True, changed=True,
                      data={"elapsed": elapsed, "tables": tables, "path": str(path), "sha256": digest},
                      message=f"restored {tables} tables from {path} in {elapsed:.1f} s")


def _archive_summary(path: Path, dsn: str, ctx: Context) -> str:
    """``2 tables`` for a readable archive, else why it cannot be read (for a plan)."""
    if not path.exists():
        return "dump not found yet"
    try:
        return f"{count_archive_tables(path, dsn, ctx)} tables"
    except ActionError as exc:
        return f"unreadable: {exc}"


def _restore_args(args: dict) -> list[str]:
    argv = ["-d", "{dsn}", "--no-password", "--exit-on-error"]
    if args.get("clean"):
        argv += ["--clean", "--if-exists"]
    if args.get("no_owner"):
        argv += ["--no-owner"]
    if int(args.get("jobs", 1)) > 1:
        argv += ["-j", str(int(args["jobs"]))]
    return argv + [str(args["path"])]


# a TOC line of `pg_restore -l`: "215; 1259 16386 TABLE public users erp" (not "TABLE DATA")
_TOC_TABLE = re.compile(r"^\d+;\s+\d+\s+\d+\s+TABLE\s+(?!DATA\s)")


def count_archive_tables(path: Path, dsn: str, ctx: Context) -> int:
    """How many tables the archive at ``path`` holds (from ``pg_restore -l``)."""
    if path.is_file() and not _is_archive_file(path):
        raise ActionError(f"{path} is not a pg_dump archive (a plain SQL dump?): pg_restore reads "
                          f"custom and directory dumps only; run plain dumps with psql")
    listing = run_pg_tool("pg_restore", ["-l", str(path)], dsn, ctx)
    return sum(1 for line in listing.stdout.splitlines() if _TOC_TABLE.match(line))


def _is_archive_file(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(5) == b"PGDMP"


class Replication(Action):
    """Report a server's replication role and lag (replicas on a primary, receive/replay on a replica)."""

    name = "postgres.replication"
    mutates = False
    args_schema = _schema({"dsn": DSN_PROP}, ["dsn"])

    def plan(self, args: dict, ctx: Context) -> str:
        return f"read replication state of {mask_dsn(args['dsn'])}"

    def run(self, args: dict, ctx: Context) -> Result:
        data = with_connection(ctx, args["dsn"], replication_state, what="replication look-up",
                               read_only=True)
        return Result(ok=True, changed=False, data=data, message=_describe_replication(data))


_PRIMARY_REPLICAS_SQL = """
SELECT application_name AS name, client_addr::text AS client_addr, state, sync_state,
       COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint AS lag_bytes,
       COALESCE(EXTRACT(epoch FROM replay_lag), 0)::float8 AS replay_lag_seconds
FROM pg_stat_replication ORDER BY application_name
"""
# replay_lag is NULL once a replica has caught up and no WAL is flowing, hence COALESCE(..., 0).

_REPLICA_STATE_SQL = """
SELECT pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::bigint
           AS lag_bytes,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8
           AS lag_seconds,
       (SELECT status FROM pg_stat_wal_receiver) AS receiver_status,
       (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver) AS upstream
"""


def replication_state(conn) -> dict:
    """The replication data of ``postgres.replication`` for the server behind ``conn``."""
    in_recovery = _fetch_one(conn, "SELECT pg_is_in_recovery() AS r")["r"]
    if not in_recovery:
        cur = conn.execute(_PRIMARY_REPLICAS_SQL)
        names = [c.name for c in cur.description]
        replicas = [json_safe(dict(zip(names, row))) for row in cur.fetchall()]
        lsn = _fetch_one(conn, "SELECT pg_current_wal_lsn()::text AS lsn")["lsn"]
        return {"role": "primary", "replicas": replicas, "current_lsn": lsn}
    row = json_safe(_fetch_one(conn, _REPLICA_STATE_SQL))
    streaming = row.pop("receiver_status") == "streaming"
    return {"role": "replica", **row, "streaming": streaming}


def _describe_replication(data: dict) -> str:
    if data["role"] == "primary":
        parts = [f"{r['name']} {r['state']} lag {r['lag_bytes']} B" for r in data["replicas"]]
        return "primary; replicas: " + (", ".join(parts) if parts else "none")
    stream = "streaming" if data["streaming"] else "NOT streaming"
    lag = data["lag_seconds"]
    return f"replica, {stream}, replay lag {'unknown' if lag is None else f'{lag:.1f} s'}"


class Promote(Action):
    """Promote a streaming replica to primary with pg_promote()."""

    name = "postgres.promote"
    mutates = True
    args_schema = _schema({
        "dsn": DSN_PROP,
        "wait": {"type": "boolean", "default": True,
                 "description": "wait until the promotion has finished"},
        "timeout": {"type": "integer", "minimum": 1, "default": 60,
                    "description": "seconds to wait for the promotion (with wait: true)"},
    }, ["dsn"])

    def plan(self, args: dict, ctx: Context) -> str:
        dsn = args["dsn"]
        where = f"{_server_address(dsn)} ({mask_dsn(dsn)})"
        try:
            state = with_connection(ctx, dsn, replication_state, what="look-up", read_only=True,
                                    connect_timeout=min(5, _connect_timeout(ctx)))
        except ActionError as exc:
            return f"promote {where} to primary (current state unknown: {exc})"
        if state["role"] == "primary":
            return f"nothing to do: {where} is already a primary"
        return f"promote replica {where} to primary; {_replica_lag_phrase(state)}"

    def run(self, args: dict, ctx: Context) -> Result:
        dsn, wait = args["dsn"], bool(args.get("wait", True))
        timeout = int(args.get("timeout", 60))
        left = ctx.time_left()
        if left is not None:
            timeout = max(1, min(timeout, int(left)))
        data = with_connection(ctx, dsn, partial(_promote, wait=wait, timeout=timeout),
                               what=f"promote {_server_address(dsn)}", read_only=False)
        if data["already_primary"]:
            return Result(ok=True, changed=False, data=_promote_data(data),
                          message=f"{_server_address(dsn)} is already a primary; nothing to promote")
        if wait and not data["promoted"]:
            raise ActionError(f"{_server_address(dsn)} did not finish promotion within {timeout} s")
        return Result(ok=True, changed=True, data=_promote_data(data),
                      message=_promotion_message(dsn, wait, data))


def _promote(conn, wait: bool, timeout: int) -> dict:
    """Promote the server behind ``conn`` unless it already is a primary."""
    if not _fetch_one(conn, "SELECT pg_is_in_recovery() AS r")["r"]:
        return {"already_primary": True, "promoted": False, "in_recovery": False}
    promoted = _fetch_one(conn, "SELECT pg_promote(%s, %s) AS p", [wait, timeout])["p"]
    in_recovery = _fetch_one(conn, "SELECT pg_is_in_recovery() AS r")["r"]
    return {"already_primary": False, "promoted": bool(promoted), "in_recovery": bool(in_recovery)}


def _promote_data(state: dict) -> dict:
    return {"promoted": state["promoted"], "in_recovery": state["in_recovery"]}


def _promotion_message(dsn: str, wait: bool, data: dict) -> str:
    if wait:
        return f"{_server_address(dsn)} promoted: now a primary"
    still = "still in recovery" if data["in_recovery"] else "out of recovery"
    return f"promotion of {_server_address(dsn)} requested ({still})"


def _replica_lag_phrase(state: dict) -> str:
    stream = "streaming" if state["streaming"] else "not streaming"
    lag = state["lag_seconds"]
    seconds = "unknown" if lag is None else f"{lag:.1f} s"
    return f"{stream}, replay lag {seconds} ({state['lag_bytes']} bytes received but not replayed)"
