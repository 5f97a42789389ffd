"""What a playbook could change in the lab, as one comparable value: ``runbook drill`` takes
it before and after a dry-run, and any difference fails the drill."""
from __future__ import annotations

from pathlib import Path

from engine.lab.parts import load_part

#: tables the lab itself writes all the time (the app's heartbeat): not a playbook's doing
LAB_TABLES = frozenset({"public.lab_heartbeat"})

_TABLES_SQL = """
SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables
WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1
"""


def lab_snapshot(state: dict) -> dict:
    """The databases (role, rows and a checksum per table), the app (its health switch and
    configuration), the backup directory, and what each optional part reports."""
    snapshot = {"primary": database_snapshot(state["primary"]),
                "replica": database_snapshot(state["replica"]),
                "app": _app_snapshot(state),
                "backups": _directory_snapshot(Path(state["backup_dir"]))}
    for name, part_state in (state.get("parts") or {}).items():
        take = getattr(load_part(name), "snapshot", None)
        if take is not None:
            snapshot[name] = take(part_state)
    return snapshot


def database_snapshot(server: dict) -> dict:
    """``{in_recovery, tables: {name: [rows, md5 of the rows' text]}}`` of one server, or
    ``{"running": False}`` when it does not answer."""
    from engine.connections.postgres import connect

    dsn = server["admin_dsn"].replace("dbname=postgres", "dbname=erp")
    try:
        with connect(dsn, connect_timeout=5) as conn:
            in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            tables = {}
            for (name,) in conn.execute(_TABLES_SQL).fetchall():
                if name in LAB_TABLES:
                    continue
                rows, digest = conn.execute(
                    "SELECT count(*), md5(COALESCE(string_agg(t::text, E'\\n' ORDER BY "
                    f"t::text), '')) FROM {name} AS t").fetchone()
                tables[name] = [rows, digest]
    except Exception as exc:  # a stopped server is part of the state, not an error here
        return {"running": False, "error": type(exc).__name__}
    return {"running": True, "in_recovery": in_recovery, "tables": tables}


def _app_snapshot(state: dict) -> dict:
    app = state.get("app") or {}
    return {"status": _read(Path(app["status_file"])) if app.get("status_file") else None,
            "config": _read(Path(state["app_config_file"])) if state.get("app_config_file")
            else None}


def _directory_snapshot(directory: Path) -> list:
    if not directory.is_dir():
        return []
    return sorted((str(p.relative_to(directory)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in directory.rglob("*") if p.is_file())


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def differences(before: dict, after: dict, where: str = "") -> list[str]:
    """Human lines naming each value that differs between two snapshots."""
    if isinstance(before, dict) and isinstance(after, dict):
        lines = []
        for key in sorted(set(before) | set(after), key=str):
            lines += differences(before.get(key), after.get(key), f"{where}.{key}".lstrip("."))
        return lines
    return [] if before == after else [f"{where}: {_short(before)} → {_short(after)}"]


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"
