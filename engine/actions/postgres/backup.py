"""``postgres.dump`` (pg_dump + a sha256sum file) and ``postgres.restore`` (checked first)."""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

from engine.actions.base import Action, ActionError, Context, Result
from engine.actions.postgres.arguments import DSN_PROP, schema
from engine.checksums import check_sumfile, sumfile_path, write_sumfile
from engine.connections.postgres import fetch_one, run_pg_tool, with_connection
from engine.secrets import mask_dsn

DUMP_FORMATS = {"custom": "c", "plain": "p", "directory": "d"}


class Dump(Action):
    """Dump a database with pg_dump and write a sha256sum file next to it."""

    name = "postgres.dump"
    mutates = True
    args_schema = schema({
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
        digest, size = write_sumfile(path)
        return Result(ok=True, changed=True,
                      data={"path": str(path), "sha256": digest, "bytes": size,
                            "format": fmt, "elapsed": round(time.monotonic() - started, 3)},
                      message=f"dumped {_human_bytes(size)} to {path} (sha256 {digest[:12]}…)")


def _database_size(ctx: Context, dsn: str) -> str:
    """`` (12 MB)``: the database's size for a plan, or '' when it cannot be looked up."""
    try:
        row = with_connection(ctx, dsn, lambda c: fetch_one(
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


def _human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def verify_checksum_file(path: Path) -> str:
    """Check dump ``path`` against ``PATH.sha256``; return its digest, raise ActionError otherwise."""
    target = sumfile_path(path)
    if not target.is_file():
        raise ActionError(f"refusing to restore {path}: checksum file {target} is missing "
                          f"(set verify_checksum: false to restore an unverified dump)")
    check = check_sumfile(path)
    if check.mismatch is not None:
        raise ActionError(f"refusing to restore {path}: it does not match {target.name} "
                          f"({check.mismatch}) — the dump is corrupt or was changed")
    return check.digest


class Restore(Action):
    """Restore a pg_dump archive with pg_restore after checking its sha256 file."""

    name = "postgres.restore"
    mutates = True
    args_schema = schema({
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
