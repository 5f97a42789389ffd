"""``postgres.replication`` (role and lag) and ``postgres.promote`` (pg_promote)."""
from __future__ import annotations

from functools import partial

from engine.actions.base import Action, ActionError, Context, Result
from engine.actions.postgres.arguments import DSN_PROP, schema
from engine.connections.postgres import connect_timeout, fetch_one, server_address, with_connection
from engine.jsonvalues import json_safe
from engine.secrets import mask_dsn


class Replication(Action):
    """Report a server's replication role and lag (replicas on a primary, receive/replay on a replica)."""

    name = "postgres.replication"
    mutates = False
    args_schema = schema({"dsn": DSN_PROP}, ["dsn"])

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
    in_recovery = fetch_one(conn, "SELECT pg_is_in_recovery() AS r")["r"]
    if not in_recovery:
        cur = conn.execute(_PRIMARY_REPLICAS_SQL)
        names = [c.name for c in cur.description]
        replicas = [json_safe(dict(zip(names, row))) for row in cur.fetchall()]
        lsn = fetch_one(conn, "SELECT pg_current_wal_lsn()::text AS lsn")["lsn"]
        return {"role": "primary", "replicas": replicas, "current_lsn": lsn}
    row = json_safe(fetch_one(conn, _REPLICA_STATE_SQL))
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
    args_schema = schema({
        "dsn": DSN_PROP,
        "wait": {"type": "boolean", "default": True,
                 "description": "wait until the promotion has finished"},
        "timeout": {"type": "integer", "minimum": 1, "default": 60,
                    "description": "seconds to wait for the promotion (with wait: true)"},
    }, ["dsn"])

    def plan(self, args: dict, ctx: Context) -> str:
        dsn = args["dsn"]
        where = f"{server_address(dsn)} ({mask_dsn(dsn)})"
        try:
            state = with_connection(ctx, dsn, replication_state, what="look-up", read_only=True,
                                    timeout=min(5, connect_timeout(ctx)))
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
                               what=f"promote {server_address(dsn)}", read_only=False)
        if data["already_primary"]:
            return Result(ok=True, changed=False, data=_promote_data(data),
                          message=f"{server_address(dsn)} is already a primary; nothing to promote")
        if wait and not data["promoted"]:
            raise ActionError(f"{server_address(dsn)} did not finish promotion within {timeout} s")
        return Result(ok=True, changed=True, data=_promote_data(data),
                      message=_promotion_message(dsn, wait, data))


def _promote(conn, wait: bool, timeout: int) -> dict:
    """Promote the server behind ``conn`` unless it already is a primary."""
    if not fetch_one(conn, "SELECT pg_is_in_recovery() AS r")["r"]:
        return {"already_primary": True, "promoted": False, "in_recovery": False}
    promoted = fetch_one(conn, "SELECT pg_promote(%s, %s) AS p", [wait, timeout])["p"]
    in_recovery = fetch_one(conn, "SELECT pg_is_in_recovery() AS r")["r"]
    return {"already_primary": False, "promoted": bool(promoted), "in_recovery": bool(in_recovery)}


def _promote_data(state: dict) -> dict:
    return {"promoted": state["promoted"], "in_recovery": state["in_recovery"]}


def _promotion_message(dsn: str, wait: bool, data: dict) -> str:
    if wait:
        return f"{server_address(dsn)} promoted: now a primary"
    still = "still in recovery" if data["in_recovery"] else "out of recovery"
    return f"promotion of {server_address(dsn)} requested ({still})"


def _replica_lag_phrase(state: dict) -> str:
    stream = "streaming" if state["streaming"] else "not streaming"
    lag = state["lag_seconds"]
    seconds = "unknown" if lag is None else f"{lag:.1f} s"
    return f"{stream}, replay lag {seconds} ({state['lag_bytes']} bytes received but not replayed)"
