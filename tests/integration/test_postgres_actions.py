"""The postgres.* actions against real servers from the lab (no mocks)."""
from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from engine.actions import get_action
from engine.actions.base import ActionError
from engine.actions.postgres.backup import Dump, Restore
from engine.actions.postgres.query import Execute, Ping, Query
from engine.actions.postgres.replication import Promote, Replication
from engine.connections.postgres import find_pg_tool
from engine.connections.postgres import split_password as _split_password
from engine.secrets import mask_dsn, sanitize
from engine.lab.sandbox import wait_for_replica

SECRET = "Sup3r-s3cret_PW.x9"


def users_count(ctx, dsn: str) -> int:
    return Query().run({"dsn": dsn, "sql": "SELECT count(*) AS n FROM users"}, ctx).data["rows"][0]["n"]


# --------------------------------------------------------------------------- registry

def test_registry_resolves_every_postgres_action():
    for verb, cls in [("ping", Ping), ("query", Query), ("execute", Execute), ("dump", Dump),
                      ("restore", Restore), ("replication", Replication), ("promote", Promote)]:
        action = get_action(f"postgres.{verb}")
        assert action is cls and action.name == f"postgres.{verb}"
        assert action.summary()
        assert action.args_schema["additionalProperties"] is False
        assert all("description" in p for p in action.args_schema["properties"].values())


def test_read_only_actions_are_marked_safe_for_dry_run():
    assert {a.name for a in (Ping, Query, Replication) if not a.mutates} == {
        "postgres.ping", "postgres.query", "postgres.replication"}
    assert all(a.mutates for a in (Execute, Dump, Restore, Promote))


def test_argument_schemas_are_valid_and_catch_mistakes():
    from jsonschema import Draft202012Validator

    for action in (Ping, Query, Execute, Dump, Restore, Replication, Promote):
        Draft202012Validator.check_schema(action.args_schema)
    dump = Draft202012Validator(Dump.args_schema)
    assert list(dump.iter_errors({"dsn": "x", "path": "p", "jobs": 4, "format": "directory"})) == []
    assert list(dump.iter_errors({"dsn": "x", "path": "p", "jobs": 4, "format": "custom"}))
    assert list(dump.iter_errors({"dsn": "x", "path": "p", "fromat": "plain"}))


def test_module_import_does_not_load_psycopg():
    code = ("import sys, engine.actions.postgres.query, engine.actions.postgres.backup, "
            "engine.actions.postgres.replication, engine.connections.postgres; "
            "sys.exit(1 if any(m.startswith('psycopg') for m in sys.modules) else 0)")
    assert subprocess.run(["python", "-c", code]).returncode == 0


# --------------------------------------------------------------------------- ping

def test_ping_primary_reports_version_and_not_in_recovery(pg_lab, ctx):
    result = Ping().run({"dsn": pg_lab["primary"]["dsn"]}, ctx)
    assert result.ok and not result.changed
    assert result.data["ok"] is True
    assert result.data["in_recovery"] is False
    assert result.data["server_version"].split(".")[0].isdigit()


def test_ping_replica_reports_in_recovery(pg_lab, ctx):
    assert Ping().run({"dsn": pg_lab["replica"]["dsn"]}, ctx).data["in_recovery"] is True


def test_ping_of_a_closed_port_fails_with_a_clear_message(ctx):
    with pytest.raises(ActionError, match="cannot connect to postgresql://erp@127.0.0.1:1/erp"):
        Ping().run({"dsn": "postgresql://erp@127.0.0.1:1/erp", "timeout": 2}, ctx)


def test_actions_share_one_connection_per_dsn(pg_lab, ctx):
    dsn = pg_lab["primary"]["dsn"]
    pids = {Query().run({"dsn": dsn, "sql": "SELECT pg_backend_pid() AS p"}, ctx).data["rows"][0]["p"]
            for _ in range(3)}
    Ping().run({"dsn": dsn}, ctx)
    assert len(pids) == 1


def test_a_dropped_connection_is_reopened_for_read_only_steps(pg_lab, ctx, superuser):
    dsn = pg_lab["primary"]["dsn"]
    pid = Query().run({"dsn": dsn, "sql": "SELECT pg_backend_pid() AS p"}, ctx).data["rows"][0]["p"]
    superuser.execute(pg_lab["primary"], f"SELECT pg_terminate_backend({pid})")
    assert Ping().run({"dsn": dsn}, ctx).ok


# --------------------------------------------------------------------------- query

def test_query_returns_json_safe_rows(pg_lab, ctx):
    sql = ("SELECT id, name, balance, active, created_at, interval '90 minutes' AS span, "
           "'\\xdead'::bytea AS blob, '{\"a\": [1, 2.5]}'::jsonb AS doc, "
           "'6f1c8e1e-0b9a-4f8e-9d1a-2f3b4c5d6e7f'::uuid AS ref, 1.5::numeric AS ratio, "
           "'10.0.0.1'::inet AS addr, date '2024-05-01' AS day, NULL AS nothing "
           "FROM users WHERE id = %s")
    result = Query().run({"dsn": pg_lab["primary"]["dsn"], "sql": sql, "params": [1]}, ctx)
    json.dumps(result.data)  # must not raise
    row = result.data["rows"][0]
    assert row == {"id": 1, "name": "User 1", "balance": 12.5, "active": True,
                   "created_at": "2024-01-02T00:00:00+00:00", "span": 5400.0, "blob": "dead",
                   "doc": {"a": [1, 2.5]}, "ref": "6f1c8e1e-0b9a-4f8e-9d1a-2f3b4c5d6e7f",
                   "ratio": 1.5, "addr": "10.0.0.1", "day": "2024-05-01", "nothing": None}
    assert result.data["rowcount"] == 1


def test_query_takes_named_params_and_leaves_percent_signs_alone(pg_lab, ctx):
    dsn = pg_lab["primary"]["dsn"]
    named = Query().run({"dsn": dsn, "sql": "SELECT count(*) AS n FROM users WHERE id <= %(top)s",
                         "params": {"top": 5}}, ctx)
    assert named.data["rows"] == [{"n": 5}]
    literal = Query().run({"dsn": dsn, "sql": "SELECT count(*) AS n FROM users WHERE email LIKE 'user1%'"}, ctx)
    assert literal.data["rows"][0]["n"] == 11  # user1, user10..user19


def test_query_caps_rows_but_counts_them_all(pg_lab, ctx):
    result = Query().run({"dsn": pg_lab["primary"]["dsn"], "sql": "SELECT id FROM users ORDER BY id",
                          "max_rows": 3}, ctx)
    assert [r["id"] for r in result.data["rows"]] == [1, 2, 3]
    assert result.data["rowcount"] == 50 and result.data["truncated"] is True


def test_query_runs_on_the_replica(pg_lab, ctx):
    assert users_count(ctx, pg_lab["replica"]["dsn"]) >= 1


@pytest.mark.parametrize("sql", [
    "INSERT INTO users (name, email) VALUES ('mallory', 'm@evil')",
    "UPDATE users SET name = 'pwned'",
    "DELETE FROM users",
    "WITH gone AS (DELETE FROM users RETURNING id) SELECT count(*) FROM gone",
    "COMMIT; DELETE FROM users",
    "SELECT 1; DELETE FROM users",
    "SET transaction_read_only = off",
    "TRUNCATE users CASCADE",
    "DROP TABLE orders",
    "SELECT nextval('users_id_seq')",
])
def test_query_refuses_to_write_even_when_the_sql_tries(seeded_lab, ctx, sql):
    dsn = seeded_lab["primary"]["dsn"]
    before = Query().run({"dsn": dsn, "sql": "SELECT count(*) AS n, max(name) AS top FROM users"}, ctx)
    with pytest.raises(ActionError, match="query failed"):
        Query().run({"dsn": dsn, "sql": sql}, ctx)
    after = Query().run({"dsn": dsn, "sql": "SELECT count(*) AS n, max(name) AS top FROM users"}, ctx)
    assert after.data["rows"] == before.data["rows"]
    assert users_count(ctx, dsn) == 50
    assert Query().run({"dsn": dsn, "sql": "SELECT count(*) AS n FROM orders"}, ctx).data["rows"][0]["n"] == 200


def test_query_refusal_does_not_leave_session_settings_behind(pg_lab, ctx):
    dsn = pg_lab["primary"]["dsn"]
    with pytest.raises(ActionError, match="returns no rows"):
        Query().run({"dsn": dsn, "sql": "SET search_path = nowhere"}, ctx)
    shown = Query().run({"dsn": dsn, "sql": "SHOW search_path"}, ctx).data["rows"][0]["search_path"]
    assert "nowhere" not in shown


def test_query_honours_the_step_deadline(pg_lab, ctx):
    ctx.deadline = time.monotonic() + 0.5
    started = time.monotonic()
    with pytest.raises(ActionError, match="statement timeout"):
        Query().run({"dsn": pg_lab["primary"]["dsn"], "sql": "SELECT pg_sleep(10)"}, ctx)
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- execute

def test_execute_writes_and_reports_rowcount(seeded_lab, ctx):
    dsn = seeded_lab["primary"]["dsn"]
    result = Execute().run({"dsn": dsn, "sql": "UPDATE users SET active = false WHERE id <= %s",
                            "params": [10]}, ctx)
    assert result.changed and result.data["rowcount"] == 10
    inactive = Query().run({"dsn": dsn, "sql": "SELECT count(*) AS n FROM users WHERE id <= 10 AND NOT active"}, ctx)
    assert inactive.data["rows"][0]["n"] == 10


def test_execute_that_matches_nothing_reports_no_change(pg_lab, ctx):
    result = Execute().run({"dsn": pg_lab["primary"]["dsn"], "sql": "DELETE FROM users WHERE id < 0"}, ctx)
    assert not result.changed and result.data["rowcount"] == 0


def test_execute_reaches_the_replica_through_streaming(seeded_lab, ctx):
    Execute().run({"dsn": seeded_lab["primary"]["dsn"],
                   "sql": "INSERT INTO users (name, email) VALUES ('Replicated', 'rep@example.com')"}, ctx)
    wait_for_replica(seeded_lab)
    rows = Query().run({"dsn": seeded_lab["replica"]["dsn"],
                        "sql": "SELECT name FROM users WHERE email = 'rep@example.com'"}, ctx).data["rows"]
    assert rows == [{"name": "Replicated"}]


def test_execute_plan_shows_the_sql_on_one_line_without_param_values(pg_lab, ctx):
    plan = Execute().plan({"dsn": pg_lab["primary"]["dsn"],
                           "sql": "UPDATE users\n   SET name = %s\n WHERE id = %s" + " " * 5 + "-- x" * 50,
                           "params": ["hidden-value", 1]}, ctx)
    assert "\n" not in plan and len(plan) < 250
    assert "UPDATE users SET name = %s WHERE id = %s" in plan
    assert "hidden-value" not in plan and "2 params" in plan


def test_execute_on_a_replica_fails_clearly(pg_lab, ctx):
    with pytest.raises(ActionError, match="read-only transaction"):
        Execute().run({"dsn": pg_lab["replica"]["dsn"], "sql": "DELETE FROM users"}, ctx)


# --------------------------------------------------------------------------- dump

def test_dump_writes_file_and_matching_sha256(pg_lab, ctx, tmp_path):
    target = tmp_path / "erp.dump"
    result = Dump().run({"dsn": pg_lab["primary"]["dsn"], "path": str(target)}, ctx)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert result.changed
    assert result.data == {**result.data, "path": str(target), "sha256": digest,
                           "bytes": target.stat().st_size}
    assert (tmp_path / "erp.dump.sha256").read_text() == f"{digest}  erp.dump\n"
    assert subprocess.run(["sha256sum", "-c", "erp.dump.sha256"], cwd=tmp_path,
                          capture_output=True).returncode == 0
    assert not list(tmp_path.glob(".*partial"))


def test_dump_plain_format_is_sql_text(pg_lab, ctx, tmp_path):
    target = tmp_path / "erp.sql"
    Dump().run({"dsn": pg_lab["primary"]["dsn"], "path": str(target), "format": "plain"}, ctx)
    assert "CREATE TABLE public.users" in target.read_text()


def test_dump_plan_names_source_size_and_target(pg_lab, ctx, tmp_path):
    plan = Dump().plan({"dsn": pg_lab["primary"]["dsn"], "path": str(tmp_path / "x.dump")}, ctx)
    assert plan.startswith("pg_dump postgresql://erp@127.0.0.1:") and "kB" in plan
    assert not (tmp_path / "x.dump").exists()


def test_dump_into_a_missing_directory_fails_before_running(pg_lab, ctx, tmp_path):
    with pytest.raises(ActionError, match="does not exist"):
        Dump().run({"dsn": pg_lab["primary"]["dsn"], "path": str(tmp_path / "no" / "x.dump")}, ctx)


def test_dump_killed_at_the_deadline_leaves_no_file(pg_lab, ctx, tmp_path, superuser):
    # a held ACCESS EXCLUSIVE lock makes pg_dump wait until we kill it
    import psycopg

    locker = psycopg.connect(pg_lab["primary"]["admin_dsn"].replace("dbname=postgres", "dbname=erp"))
    try:
        locker.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        ctx.deadline = time.monotonic() + 1.0
        with pytest.raises(ActionError, match="timed out"):
            Dump().run({"dsn": pg_lab["primary"]["dsn"], "path": str(tmp_path / "slow.dump")}, ctx)
    finally:
        locker.close()
    assert list(tmp_path.iterdir()) == []
    assert _eventually(lambda: superuser.value(
        pg_lab["primary"], "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'") == 0)


def _eventually(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --------------------------------------------------------------------------- restore

@pytest.fixture
def good_dump(seeded_lab, tmp_path) -> Path:
    from engine.actions.base import Context

    ctx = Context()
    try:
        Dump().run({"dsn": seeded_lab["primary"]["dsn"], "path": str(tmp_path / "erp.dump")}, ctx)
    finally:
        ctx.close()
    return tmp_path / "erp.dump"


@pytest.fixture
def scratch_db(pg_lab, superuser):
    """An empty database owned by the erp role; its DSN. Dropped after the test."""
    server = pg_lab["primary"]
    superuser.execute(server, "DROP DATABASE IF EXISTS scratch WITH (FORCE)", dbname="postgres")
    superuser.execute(server, "CREATE DATABASE scratch OWNER erp", dbname="postgres")
    yield server["dsn"].replace("/erp?", "/scratch?")
    superuser.execute(server, "DROP DATABASE IF EXISTS scratch WITH (FORCE)", dbname="postgres")


def test_restore_restores_a_good_dump_into_an_empty_database(good_dump, scratch_db, ctx):
    result = Restore().run({"dsn": scratch_db, "path": str(good_dump)}, ctx)
    # users, orders and the lab app's heartbeat table: the dump holds every table
    assert result.changed and result.data["tables"] == 3 and result.data["elapsed"] >= 0
    assert users_count(ctx, scratch_db) == 50


def test_restore_with_clean_puts_deleted_rows_back(good_dump, seeded_lab, ctx):
    dsn = seeded_lab["primary"]["dsn"]
    Execute().run({"dsn": dsn, "sql": "DELETE FROM orders WHERE id <= 120"}, ctx)
    Restore().run({"dsn": dsn, "path": str(good_dump), "clean": True, "jobs": 2}, ctx)
    orders = Query().run({"dsn": dsn, "sql": "SELECT count(*) AS n FROM orders"}, ctx).data["rows"][0]["n"]
    assert orders == 200 and users_count(ctx, dsn) == 50


def test_restore_refuses_a_tampered_dump(good_dump, scratch_db, ctx):
    data = bytearray(good_dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    good_dump.write_bytes(bytes(data))
    with pytest.raises(ActionError, match="does not match erp.dump.sha256"):
        Restore().run({"dsn": scratch_db, "path": str(good_dump)}, ctx)
    tables = Query().run({"dsn": scratch_db, "sql": "SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'"}, ctx)
    assert tables.data["rows"][0]["n"] == 0


def test_restore_refuses_a_dump_without_checksum(good_dump, scratch_db, ctx):
    good_dump.with_name("erp.dump.sha256").unlink()
    with pytest.raises(ActionError, match="checksum file .* is missing"):
        Restore().run({"dsn": scratch_db, "path": str(good_dump)}, ctx)
    result = Restore().run({"dsn": scratch_db, "path": str(good_dump), "verify_checksum": False}, ctx)
    assert result.data["tables"] == 3


def test_restore_of_a_plain_dump_explains_how(pg_lab, scratch_db, ctx, tmp_path):
    plain = tmp_path / "erp.sql"
    Dump().run({"dsn": pg_lab["primary"]["dsn"], "path": str(plain), "format": "plain"}, ctx)
    with pytest.raises(ActionError, match="not a pg_dump archive"):
        Restore().run({"dsn": scratch_db, "path": str(plain)}, ctx)


def test_directory_dump_in_parallel_round_trips(seeded_lab, scratch_db, ctx, tmp_path):
    target = tmp_path / "erp.dir"
    result = Dump().run({"dsn": seeded_lab["primary"]["dsn"], "path": str(target),
                         "format": "directory", "jobs": 2}, ctx)
    assert target.is_dir() and result.data["bytes"] > 0
    assert subprocess.run(["sha256sum", "-c", "erp.dir.sha256"], cwd=tmp_path,
                          capture_output=True).returncode == 0
    Restore().run({"dsn": scratch_db, "path": str(target), "jobs": 2}, ctx)
    assert users_count(ctx, scratch_db) == 50


def test_restore_plan_says_what_would_happen(good_dump, pg_lab, ctx):
    plan = Restore().plan({"dsn": pg_lab["primary"]["dsn"], "path": str(good_dump), "clean": True}, ctx)
    assert plan.startswith(f"pg_restore --clean {good_dump} (3 tables) into postgresql://erp@")
    assert plan.endswith("checksum verified first")
    missing = Restore().plan({"dsn": pg_lab["primary"]["dsn"], "path": "/nowhere/x.dump"}, ctx)
    assert "(dump not found yet)" in missing


# --------------------------------------------------------------------------- replication

def test_replication_on_the_primary_lists_the_streaming_replica(pg_lab, ctx):
    data = Replication().run({"dsn": pg_lab["primary"]["dsn"]}, ctx).data
    assert data["role"] == "primary"
    [replica] = data["replicas"]
    assert replica["name"] == "replica_db" and replica["state"] == "streaming"
    assert replica["lag_bytes"] >= 0 and replica["replay_lag_seconds"] >= 0


def test_replication_on_the_replica_reports_lsns_and_lag(pg_lab, ctx):
    wait_for_replica(pg_lab)
    data = Replication().run({"dsn": pg_lab["replica"]["dsn"]}, ctx).data
    assert data["role"] == "replica" and data["streaming"] is True
    assert "/" in data["receive_lsn"] and "/" in data["replay_lsn"]
    assert data["lag_seconds"] >= 0
    json.dumps(data)


# --------------------------------------------------------------------------- promote

def test_promote_turns_a_replica_into_a_primary(spare_lab, ctx):
    lab = spare_lab("promote")
    replica = lab["replica"]["dsn"]
    plan = Promote().plan({"dsn": replica}, ctx)
    assert f"promote replica 127.0.0.1:{lab['replica']['port']}" in plan and "replay lag" in plan

    result = Promote().run({"dsn": replica, "timeout": 20}, ctx)
    assert result.changed and result.data == {"promoted": True, "in_recovery": False}
    assert Ping().run({"dsn": replica}, ctx).data["in_recovery"] is False
    Execute().run({"dsn": replica, "sql": "INSERT INTO users (name, email) VALUES ('new', 'new@primary')"}, ctx)

    again = Promote().run({"dsn": replica}, ctx)
    assert not again.changed and again.data == {"promoted": False, "in_recovery": False}
    assert "already a primary" in Promote().plan({"dsn": replica}, ctx)


def test_promote_plan_survives_an_unreachable_server(ctx):
    plan = Promote().plan({"dsn": f"postgresql://erp:{SECRET}@127.0.0.1:1/erp"}, ctx)
    assert plan.startswith("promote 127.0.0.1:1 (postgresql://erp:***@127.0.0.1:1/erp)")
    assert "current state unknown" in plan and SECRET not in plan


# --------------------------------------------------------------------------- passwords

@pytest.mark.parametrize("dsn, masked", [
    ("postgresql://erp:s3cret@db:5432/erp", "postgresql://erp:***@db:5432/erp"),
    ("postgres://erp:p@ss@word@db/erp?sslmode=require", "postgres://erp:***@db/erp?sslmode=require"),
    ("postgresql://erp@db/erp?password=s3cret&sslmode=require", "postgresql://erp@db/erp?password=***&sslmode=require"),
    ("postgresql://erp@db/erp", "postgresql://erp@db/erp"),
    ("postgresql://db:5432/erp", "postgresql://db:5432/erp"),
    ("host=db user=erp password=s3cret dbname=erp", "host=db user=erp password=*** dbname=erp"),
    ("host=db password = 'with space \\' quote' dbname=erp", "host=db password = *** dbname=erp"),
])
def test_mask_dsn_hides_passwords_in_every_form(dsn, masked):
    assert mask_dsn(dsn) == masked


def test_sanitize_removes_decoded_password_from_messages():
    dsn = "postgresql://erp:p%40ss@db/erp"
    assert sanitize("auth failed for p@ss at postgresql://erp:p%40ss@db/erp", dsn) == \
        "auth failed for *** at postgresql://erp:***@db/erp"


def test_client_tools_get_the_password_from_env_not_argv():
    dsn, env = _split_password(f"postgresql://erp:{SECRET}@127.0.0.1:5432/erp")
    assert SECRET not in dsn and env["PGPASSWORD"] == SECRET


@pytest.fixture(scope="module")
def password_role(pg_lab):
    """A login role with a password, allowed to read erp and own a scratch database."""
    import psycopg

    admin = pg_lab["primary"]["admin_dsn"]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE masked LOGIN PASSWORD '{SECRET}' IN ROLE pg_read_all_data, pg_monitor")
        conn.execute("CREATE DATABASE masked_db OWNER masked")
    port = pg_lab["primary"]["port"]
    return {"url": f"postgresql://masked:{quote(SECRET)}@127.0.0.1:{port}/erp",
            "kv": f"host=127.0.0.1 port={port} dbname=erp user=masked password='{SECRET}'",
            "own_db": f"postgresql://masked:{quote(SECRET)}@127.0.0.1:{port}/masked_db",
            "wrong": f"postgresql://masked:{SECRET}-wrong@127.0.0.1:{port}/erp",
            "closed": f"postgresql://masked:{SECRET}@127.0.0.1:1/erp"}


def _everything_shown(calls) -> list[str]:
    """Run each call; collect its plan, message, data and error texts."""
    shown = []
    for action, args, ctx in calls:
        shown.append(action.plan(args, ctx))
        try:
            result = action.run(args, ctx)
            shown += [result.message, json.dumps(result.data)]
        except ActionError as exc:
            shown.append(str(exc))
            shown.append(repr(exc.__cause__) + repr(exc.__context__))
    return shown


def test_passwords_never_appear_in_plans_results_or_errors(password_role, ctx, tmp_path):
    dump = str(tmp_path / "m.dump")
    calls = []
    for dsn in (password_role["url"], password_role["kv"]):
        calls += [
            (Ping(), {"dsn": dsn}, ctx),
            (Query(), {"dsn": dsn, "sql": "SELECT count(*) AS n FROM users"}, ctx),
            (Query(), {"dsn": dsn, "sql": "SELECT * FROM no_such_table"}, ctx),
            (Query(), {"dsn": dsn, "sql": "DELETE FROM users"}, ctx),
            (Execute(), {"dsn": dsn, "sql": "DELETE FROM users"}, ctx),
            (Replication(), {"dsn": dsn}, ctx),
            (Promote(), {"dsn": dsn}, ctx),
        ]
    calls += [
        (Dump(), {"dsn": password_role["url"], "path": dump}, ctx),
        (Restore(), {"dsn": password_role["own_db"], "path": dump}, ctx),
        (Restore(), {"dsn": password_role["own_db"], "path": dump + ".missing"}, ctx),
        (Dump(), {"dsn": password_role["wrong"], "path": str(tmp_path / "w.dump")}, ctx),
        (Ping(), {"dsn": password_role["wrong"]}, ctx),
        (Ping(), {"dsn": password_role["closed"], "timeout": 2}, ctx),
        (Restore(), {"dsn": password_role["wrong"], "path": dump, "clean": True}, ctx),
    ]
    shown = _everything_shown(calls)
    assert Path(dump).exists(), "the dump with a password DSN should have worked"
    assert any("users" in s or '"n": 50' in s for s in shown)
    assert any("password authentication failed" in s for s in shown)
    leaks = [s for s in shown if SECRET in s or quote(SECRET) in s]
    assert leaks == []


# --------------------------------------------------------------------------- tools

def test_a_missing_client_tool_names_the_package_to_install():
    with pytest.raises(ActionError, match="apt-get install postgresql-client"):
        find_pg_tool("pg_no_such_tool")


def test_client_tools_are_found():
    assert Path(find_pg_tool("pg_dump")).name == "pg_dump"
    assert Path(find_pg_tool("pg_restore")).name == "pg_restore"


def test_the_engines_own_session_never_blocks_drop_database(scratch_db, pg_lab, ctx):
    # A restore test's cleanup: query the scratch database, then drop it from another DSN.
    # The engine's cached session to scratch used to make DROP fail "being accessed by
    # other users" — the other user was the engine.
    query, execute = get_action("postgres.query")(), get_action("postgres.execute")()
    ctx.bind_step(None, None)
    assert query.run({"dsn": scratch_db, "sql": "SELECT 1 AS one"}, ctx).ok
    admin = pg_lab["primary"]["dsn"].replace("/erp?", "/postgres?")
    result = execute.run({"dsn": admin, "sql": "DROP DATABASE scratch"}, ctx)
    assert result.ok and result.data["status"] == "DROP DATABASE"
