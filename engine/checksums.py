"""SHA-256 of bytes, text, files and dump directories, and ``sha256sum`` files: the one
hashing library.

A sumfile is what ``sha256sum`` writes and ``sha256sum -c`` checks: one
``HEX  NAME`` line per file (``HEX *NAME`` in binary mode), names relative
to the sumfile's directory.
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["sha256_bytes", "sha256_text", "sha256_file", "sha256_file_and_size",
           "sumfile_path", "sums_of", "format_sums", "parse_sums", "read_sums", "digest_for",
           "digest_of_sums", "total_size", "write_sumfile", "check_sumfile", "SumCheck"]

CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")

Sums = list[tuple[str, str]]  # (hex digest, name), as in a sumfile


# --------------------------------------------------------------------------
# Digests
# --------------------------------------------------------------------------

def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    """Hex SHA-256 of ``text`` encoded as UTF-8."""
    return sha256_bytes(text.encode())


def sha256_file_and_size(path: str | os.PathLike, chunk: int = CHUNK) -> tuple[str, int]:
    """Hex SHA-256 and size in bytes of a file, read in chunks (``OSError`` as it comes)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    return sha256_file_and_size(path)[0]


# --------------------------------------------------------------------------
# sha256sum files
# --------------------------------------------------------------------------

def sumfile_path(path: Path) -> Path:
    """Where the sumfile of ``path`` lives: ``PATH.sha256``."""
    return path.with_name(path.name + ".sha256")


def sums_of(path: Path) -> Sums:
    """(sha256, name relative to path's parent) for a file, or each file of a directory."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        return [(sha256_file(f), f.relative_to(path.parent).as_posix()) for f in files]
    return [(sha256_file(path), path.name)]


def format_sums(sums: Sums) -> str:
    """The sumfile text of ``sums``."""
    return "".join(f"{digest}  {name}\n" for digest, name in sums)


def parse_sums(text: str) -> Sums:
    """The (lower-case digest, name) entries of sumfile text; other lines are ignored.

    A line with a digest and no name gives the name ``""``.
    """
    entries = []
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if parts and _HEX64.match(parts[0]):
            name = parts[1].lstrip("*").strip() if len(parts) > 1 else ""
            entries.append((parts[0].lower(), name))
    return entries


def read_sums(sum_path: str | os.PathLike) -> Sums:
    """The entries of the sumfile at ``sum_path`` (``FileNotFoundError`` when it is missing)."""
    with open(sum_path, encoding="utf-8", errors="replace") as handle:
        return parse_sums(handle.read())


def digest_for(sums: Sums, target: str) -> str | None:
    """The digest that ``sums`` lists for file ``target`` (by path or base name); the only
    entry when there is just one; None when several entries name other files."""
    base = os.path.basename(target)
    for digest, name in sums:
        if name in (target, base) or os.path.basename(name) == base:
            return digest
    if len(sums) == 1:
        return sums[0][0]
    return None


def digest_of_sums(sums: Sums) -> str:
    """One sha256 for what ``sums`` covers: a single file's own, else that of the sumfile text."""
    if len(sums) == 1 and "/" not in sums[0][1]:
        return sums[0][0]
    return sha256_text(format_sums(sums))


def total_size(path: Path) -> int:
    """Size in bytes of a file, or of every file of a directory."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def write_sumfile(path: Path) -> tuple[str, int]:
    """Write ``PATH.sha256`` for a file or directory (``sha256sum -c`` verifies it from
    its directory), atomically; return (:func:`digest_of_sums`, size in bytes)."""
    sums = sums_of(path)
    target = sumfile_path(path)
    tmp = target.with_name(f".{target.name}.partial")
    tmp.write_text(format_sums(sums))
    os.replace(tmp, target)
    return digest_of_sums(sums), total_size(path)


@dataclass(frozen=True)
class SumCheck:
    """``path`` checked against its sumfile."""

    sumfile: Path
    #: :func:`digest_of_sums` of what is on disk now
    digest: str
    #: the first difference ("NAME: expected X, got Y"), or None when everything matches
    mismatch: str | None


def check_sumfile(path: Path) -> SumCheck:
    """Compare ``path`` with ``PATH.sha256`` (``FileNotFoundError`` when that is missing)."""
    target = sumfile_path(path)
    expected = {name: digest for digest, name in read_sums(target)}
    actual = {name: digest for digest, name in sums_of(path)}
    mismatch = None if expected == actual else _first_difference(expected, actual)
    return SumCheck(target, digest_of_sums([(d, n) for n, d in sorted(actual.items())]), mismatch)


def _first_difference(expected: dict[str, str], actual: dict[str, str]) -> str:
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if want != got:
            return f"{name}: expected {want or 'no entry'}, got {got or 'no file'}"
    return "no entries"
