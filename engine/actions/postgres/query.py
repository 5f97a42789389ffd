"""``postgres.ping``, ``postgres.query`` (read-only) and ``postgres.execute``."""
from __future__ import annotations

from functools import partial
from typing import Any

from engine.actions.base import Action, ActionError, Context, Result
from engine.actions.postgres.arguments import DSN_PROP, PARAMS_PROP, SQL_PROP, schema
from engine.connections.postgres import (connect_timeout, fetch_one, release_sessions_for,
                                         server_address,
                                         statement_timeout_ms, with_connection)
from engine.jsonvalues import json_safe
from engine.secrets import mask_dsn


def one_line(text: str, limit: int = 100) -> str:
    """``text`` with whitespace collapsed, cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class Ping(Action):
    """Connect to a PostgreSQL server and report its version and recovery state."""

    name = "postgres.ping"
    mutates = False
    args_schema = schema({
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
            ctx, dsn, lambda conn: fetch_one(conn, "SELECT current_setting('server_version') AS v, "
                                                   "pg_is_in_recovery() AS r"),
            what=f"ping {mask_dsn(dsn)}", read_only=True,
            timeout=connect_timeout(ctx, timeout))
        version = str(row["v"]).split()[0]
        role = "replica (in recovery)" if row["r"] else "primary"
        return Result(ok=True, changed=False,
                      data={"ok": True, "server_version": version, "in_recovery": bool(row["r"])},
                      message=f"{server_address(dsn)} answers: PostgreSQL {version}, {role}")


class Query(Action):
    """Run a SELECT in a READ ONLY transaction and return its rows (never writes)."""

    name = "postgres.query"
    mutates = False
    args_schema = schema({
        "dsn": DSN_PROP,
        "sql": SQL_PROP,
        "params": PARAMS_PROP,
        "max_rows": {"type": "integer", "minimum": 1, "default": 1000,
                     "description": "keep at most this many rows in the result (rowcount still counts all)"},
    }, ["dsn", "sql"])

    def plan(self, args: dict, ctx: Context) -> str:
        return f"query {mask_dsn(args['dsn'])} (read-only): {one_line(args['sql'])}"

    def run(self, args: dict, ctx: Context) -> Result:
        dsn, max_rows = args["dsn"], int(args.get("max_rows", 1000))
        work = partial(_read_only_rows, sql=args["sql"], params=args.get("params"),
                       max_rows=max_rows, timeout_ms=statement_timeout_ms(ctx))
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
                raise ActionError(f"query failed: {one_line(sql, 60)!r} returns no rows; postgres.query "
                                  f"runs one read-only statement that does (SELECT, SHOW, EXPLAIN ...) "
                                  f"— use postgres.execute for anything else") from None
            raise
        columns = [c.name for c in cur.description or []]
    return columns, rows, total


class Execute(Action):
    """Run a SQL statement that changes the database (DML, DDL) and report the rows affected."""

    name = "postgres.execute"
    mutates = True
    args_schema = schema({"dsn": DSN_PROP, "sql": SQL_PROP, "params": PARAMS_PROP}, ["dsn", "sql"])

    def plan(self, args: dict, ctx: Context) -> str:
        shown = f"execute on {mask_dsn(args['dsn'])}: {one_line(args['sql'])}"
        params = args.get("params")
        # parameter values may be secrets (ALTER ROLE ... PASSWORD %s): show only how many
        return f"{shown} ({len(params)} params)" if params else shown

    def run(self, args: dict, ctx: Context) -> Result:
        release_sessions_for(ctx, args["sql"])
        work = partial(_execute, sql=args["sql"], params=args.get("params"),
                       timeout_ms=statement_timeout_ms(ctx))
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
