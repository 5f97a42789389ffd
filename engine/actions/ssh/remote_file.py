"""What a file on a target's host looks like: checksum, mode, owner (one round trip)."""
from __future__ import annotations

from dataclasses import dataclass

from engine.actions.base import ActionError, Context

# absent | directory | "file SHA256 MODE OWNER GROUP BYTES"; symlinks are followed
_PROBE = ('if [ ! -e "$1" ]; then echo absent; exit 0; fi; '
          'if [ -d "$1" ]; then echo directory; exit 0; fi; '
          's=$(sha256sum < "$1") || exit 1; set -- "$1" $s; '
          'echo "file $2 $(stat -L -c "%a %U %G %s" -- "$1")"')


@dataclass(frozen=True)
class RemoteFile:
    sha256: str
    mode: int
    owner: str
    group: str
    bytes: int

    @property
    def mode_text(self) -> str:
        return f"{self.mode:04o}"


def probe(session, path: str, ctx: Context) -> RemoteFile | None:
    """The file at ``path`` on the session's host, or None when there is none.

    A directory there is an error (a file was expected)."""
    done = session.run(["sh", "-c", _PROBE, "sh", path], ctx)
    words = done.stdout.split()
    if done.rc != 0 or not words:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise ActionError(f"cannot read {path} on {session.name}: {last}")
    if words[0] == "absent":
        return None
    if words[0] == "directory":
        raise ActionError(f"{path} on {session.name} is a directory, not a file")
    _, digest, mode, owner, group, size = words[:6]
    return RemoteFile(digest.lower(), int(mode, 8), owner, group, int(size))


def short(digest: str | None) -> str:
    return f"{digest[:12]}…" if digest else "none"


def size_text(size: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} bytes"
