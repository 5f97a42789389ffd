"""File actions: checksum and existence checks (read-only)."""
from __future__ import annotations

import hashlib
import os
import re
import stat

from engine.actions.base import Action, ActionError, Context, Result

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def sha256_of(path: str, chunk: int = 1 << 20) -> tuple[str, int]:
    """Hex SHA-256 and size of a file, read in chunks."""
    digest, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as handle:
            while block := handle.read(chunk):
                digest.update(block)
                size += len(block)
    except FileNotFoundError:
        raise ActionError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise ActionError(f"is a directory, not a file: {path}") from None
    except PermissionError:
        raise ActionError(f"permission denied: {path}") from None
    return digest.hexdigest(), size


def expected_from_sumfile(sum_path: str, target: str) -> str:
    """The checksum for ``target`` in a ``sha256sum`` style file (``HEX  name`` lines)."""
    try:
        with open(sum_path, encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle if line.strip()]
    except FileNotFoundError:
        raise ActionError(f"checksum file not found: {sum_path}") from None
    entries = []
    for line in lines:
        parts = line.split(None, 1)
        if parts and _HEX64.match(parts[0]):
            name = parts[1].lstrip("*").strip() if len(parts) > 1 else ""
            entries.append((parts[0].lower(), name))
    if not entries:
        raise ActionError(f"no SHA-256 checksum found in {sum_path}")
    base = os.path.basename(target)
    for digest, name in entries:
        if name in (target, base) or os.path.basename(name) == base:
            return digest
    if len(entries) == 1:
        return entries[0][0]
    raise ActionError(f"{sum_path} lists no checksum for {base}")


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
        return f"check sha256 of {args['path']}" + (f" against {against}" if against else "")

    def run(self, args, ctx: Context) -> Result:
        actual, size = sha256_of(args["path"])
        expected = args.get("sha256")
        if args.get("sha256_file"):
            expected = expected_from_sumfile(args["sha256_file"], args["path"])
        data = {"path": args["path"], "sha256": actual, "bytes": size, "expected": expected}
        if expected and expected.lower() != actual:
            return Result(ok=False, data=data,
                          message=f"checksum mismatch for {args['path']}: expected "
                                  f"{expected.lower()[:16]}..., got {actual[:16]}...")
        return Result(ok=True, data=data, message=f"sha256 {actual[:16]}... ({size} bytes)")


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

    def run(self, args, ctx: Context) -> Result:
        path, want = args["path"], args.get("state", "present")
        try:
            info = os.stat(path)
        except FileNotFoundError:
            info = None
        data = {"path": path, "exists": info is not None}
        if info is not None:
            kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
            data.update(type=kind, bytes=info.st_size, mtime=info.st_mtime)
        if want == "absent":
            ok = info is None
            return Result(ok=ok, data=data, message="" if ok else f"{path} exists")
        if info is None:
            return Result(ok=False, data=data, message=f"{path} does not exist")
        if args.get("type", "any") not in ("any", data["type"]):
            return Result(ok=False, data=data, message=f"{path} is a {data['type']}, not a {args['type']}")
        if data["bytes"] < args.get("min_bytes", 0):
            return Result(ok=False, data=data,
                          message=f"{path} has {data['bytes']} bytes, fewer than {args['min_bytes']}")
        return Result(ok=True, data=data)
