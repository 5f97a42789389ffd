"""File actions: checksum and existence checks (read-only).

On a target with an ``ssh:`` block both look at the file on that host (``sha256sum``
and ``stat`` run there: a dump is hashed where it lies, never copied to be hashed).
"""
from __future__ import annotations

import os
import stat

from engine.actions.base import Action, ActionError, Context, Result
from engine.checksums import digest_for, parse_sums, sha256_file_and_size
from engine.actions.core import on_host, remote_result, where



def sha256_of(path: str) -> tuple[str, int]:
    """Hex SHA-256 and size of a file, read in chunks; a clear error when it cannot be read."""
    try:
        return sha256_file_and_size(path)
    except FileNotFoundError:
        raise ActionError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise ActionError(f"is a directory, not a file: {path}") from None
    except PermissionError:
        raise ActionError(f"permission denied: {path}") from None


def expected_from_sumfile(sum_path: str, target: str) -> str:
    """The checksum for ``target`` in a ``sha256sum`` style file (``HEX  name`` lines)."""
    try:
        with open(sum_path, encoding="utf-8", errors="replace") as handle:
            return expected_from_sums(handle.read(), sum_path, target)
    except FileNotFoundError:
        raise ActionError(f"checksum file not found: {sum_path}") from None


def expected_from_sums(text: str, sum_path: str, target: str) -> str:
    """The checksum for ``target`` in the text of a ``sha256sum`` style file."""
    entries = parse_sums(text)
    if not entries:
        raise ActionError(f"no SHA-256 checksum found in {sum_path}")
    digest = digest_for(entries, target)
    if digest is None:
        raise ActionError(f"{sum_path} lists no checksum for {os.path.basename(target)}")
    return digest


class Checksum(Action):
    """Compute a file's SHA-256 and compare it with an expected value or a sha256sum file."""

    name = "file.checksum"
    mutates = False
    args_schema = {
        "type": "object", "additionalProperties": False, "required": ["path"],
        "properties": {
            "path": {"type": "string", "description": "File to hash."},
            "sha256": {"type": "string", "description": "Expected hex digest."},
            "sha256_file": {"type": "string", "description": "A `sha256sum` output file to check against."},
        },
        "not": {"required": ["sha256", "sha256_file"]},
    }

    def plan(self, args, ctx: Context) -> str:
        against = args.get("sha256_file") or args.get("sha256")
        return (where(on_host(ctx)) + f"check sha256 of {args['path']}"
                + (f" against {against}" if against else ""))

    def run(self, args, ctx: Context) -> Result:
        session = on_host(ctx)
        if session is None:
            actual, size = sha256_of(args["path"])
        else:
            actual, size = remote_sha256(session, args["path"], ctx)
        expected = args.get("sha256")
        if args.get("sha256_file"):
            expected = self._expected(args, ctx, session)
        data = {"path": args["path"], "sha256": actual, "bytes": size, "expected": expected}
        if expected and expected.lower() != actual:
            return remote_result(Result(
                ok=False, data=data, message=f"{where(session)}checksum mismatch for "
                f"{args['path']}: expected {expected.lower()[:16]}..., got {actual[:16]}..."),
                session)
        return remote_result(Result(ok=True, data=data,
                                    message=f"sha256 {actual[:16]}... ({size} bytes)"), session)

    def _expected(self, args, ctx: Context, session) -> str:
        if session is None:
            return expected_from_sumfile(args["sha256_file"], args["path"])
        done = session.run(["cat", "--", args["sha256_file"]], ctx)
        if done.rc != 0:
            raise ActionError(_remote_problem(session, args["sha256_file"], done.stderr,
                                              "checksum file"))
        return expected_from_sums(done.stdout, args["sha256_file"], args["path"])


class Exists(Action):
    """Check that a path exists (or is absent), optionally of a given type."""

    name = "file.exists"
    mutates = False
    args_schema = {
        "type": "object", "additionalProperties": False, "required": ["path"],
        "properties": {
            "path": {"type": "string"},
            "type": {"enum": ["file", "directory", "any"], "description": "Expected kind (default any)."},
            "state": {"enum": ["present", "absent"], "description": "present (default) or absent."},
            "min_bytes": {"type": "integer", "minimum": 0, "description": "Minimum size of a file."},
        },
    }

    def plan(self, args, ctx: Context) -> str:
        return (where(on_host(ctx)) + f"check that {args['path']} is "
                f"{args.get('state', 'present')}")

    def run(self, args, ctx: Context) -> Result:
        session = on_host(ctx)
        return remote_result(self._check(args, self._stat(args["path"], ctx, session)), session)

    def _stat(self, path: str, ctx: Context, session) -> dict | None:
        """``{type, bytes, mtime}`` of the path (symlinks followed), None when missing."""
        if session is not None:
            return remote_stat(session, path, ctx)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            return None
        kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
        return {"type": kind, "bytes": info.st_size, "mtime": info.st_mtime}

    def _check(self, args, info: dict | None) -> Result:
        path, want = args["path"], args.get("state", "present")
        data = {"path": path, "exists": info is not None, **(info or {})}
        if want == "absent":
            ok = info is None
            return Result(ok=ok, data=data, message="" if ok else f"{path} exists")
        if info is None:
            return Result(ok=False, data=data, message=f"{path} does not exist")
        if args.get("type", "any") not in ("any", info["type"]):
            return Result(ok=False, data=data, message=f"{path} is a {data['type']}, not a {args['type']}")
        if info["bytes"] < args.get("min_bytes", 0):
            return Result(ok=False, data=data,
                          message=f"{path} has {data['bytes']} bytes, fewer than {args['min_bytes']}")
        return Result(ok=True, data=data)


# --- the same facts from a target's host ---

_SHA256_AND_SIZE = 'sha256sum -- "$1" && stat -L -c %s -- "$1"'


def remote_sha256(session, path: str, ctx: Context) -> tuple[str, int]:
    """Hex SHA-256 and size of a file on the session's host, computed there."""
    done = session.run(["sh", "-c", _SHA256_AND_SIZE, "sh", path], ctx)
    lines = done.stdout.splitlines()
    if done.rc != 0 or len(lines) < 2:
        raise ActionError(_remote_problem(session, path, done.stderr, "file"))
    return lines[0].split()[0].lstrip("\\").lower(), int(lines[1].strip())


def remote_stat(session, path: str, ctx: Context) -> dict | None:
    """``{type, bytes, mtime}`` of a path on the session's host, None when it is missing."""
    done = session.run(["stat", "-L", "-c", "%F|%s|%Y", "--", path], ctx)
    if done.rc != 0:
        if "No such file" in done.stderr:
            return None
        raise ActionError(_remote_problem(session, path, done.stderr, "path"))
    kind, size, mtime = done.stdout.strip().rsplit("|", 2)
    return {"type": "directory" if kind == "directory" else "file", "bytes": int(size),
            "mtime": float(mtime)}


def _remote_problem(session, path: str, stderr: str, what: str) -> str:
    """One line for a remote file error, worded like the local ones."""
    if "No such file" in stderr:
        return f"{what} not found on {session.name}: {path}"
    if "Is a directory" in stderr:
        return f"is a directory, not a file, on {session.name}: {path}"
    if "Permission denied" in stderr:
        return f"permission denied on {session.name}: {path}"
    last = (stderr.strip().splitlines() or ["no output"])[-1][:200]
    return f"cannot read {path} on {session.name}: {last}"
