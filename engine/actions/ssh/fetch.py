"""``ssh.fetch``: download a file from the target's host to the machine running the engine.

No change when the local copy already has the remote file's SHA-256. The bytes
stream from ``cat`` on the host into a temporary file beside ``dest`` (hashed as
they arrive, memory flat whatever the size), renamed over ``dest`` when complete.
"""
from __future__ import annotations

import hashlib
import os
import tempfile

from engine.actions.base import Action, ActionError, Context, Result
from engine.actions.files import sha256_of
from engine.actions.ssh.remote_file import probe, short, size_text


class Fetch(Action):
    """Download a file from the target's host (no change when the local copy's sha256 matches)."""

    name = "ssh.fetch"
    mutates = True
    args_schema = {
        "type": "object", "additionalProperties": False, "required": ["src", "dest"],
        "properties": {
            "src": {"type": "string", "minLength": 1, "description": "Path of the file on the host."},
            "dest": {"type": "string", "minLength": 1,
                     "description": "Local path; an existing directory or a path ending in / "
                                    "receives the file under its own name."},
            "mode": {"type": "string", "pattern": "^0?[0-7]{3}$",
                     "description": "Octal permissions of the local file, quoted (default 0600: "
                                    "what is fetched from a server is often private)."},
        },
    }

    def plan(self, args, ctx: Context) -> str:
        session = _session(ctx)
        remote = _remote(session, args["src"], ctx)
        dest = _dest(args)
        local = _local_sha256(dest)
        if local == remote.sha256:
            return f"no change: {dest} already matches {session.name}:{args['src']}" + session.note()
        what = "new file" if local is None else f"replaces sha256 {short(local)}"
        return (f"download {session.name}:{args['src']} → {dest} ({size_text(remote.bytes)}, "
                f"{what})" + session.note())

    def run(self, args, ctx: Context) -> Result:
        from engine.actions.core import remote_result

        session = _session(ctx)
        remote = _remote(session, args["src"], ctx)
        dest = _dest(args)
        previous = _local_sha256(dest)
        data = {"src": args["src"], "dest": dest, "previous_sha256": previous}
        if previous == remote.sha256:
            data.update(sha256=previous, bytes=remote.bytes)
            return remote_result(Result(ok=True, changed=False, data=data,
                                        message="no change: already there"), session)
        digest, size = _download(session, args, dest, ctx)
        data.update(sha256=digest, bytes=size)
        return remote_result(Result(ok=True, changed=True, data=data,
                                    message=f"downloaded {size_text(size)}, sha256 {short(digest)}"),
                             session)


def _session(ctx: Context):
    from engine.connections.ssh import required

    return required(ctx, "ssh.fetch")


def _remote(session, path: str, ctx: Context):
    found = probe(session, path, ctx)
    if found is None:
        raise ActionError(f"file not found on {session.name}: {path}")
    return found


def _dest(args: dict) -> str:
    dest = args["dest"]
    if dest.endswith("/") or os.path.isdir(dest):
        return os.path.join(dest, os.path.basename(args["src"].rstrip("/")))
    return dest


def _local_sha256(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    return sha256_of(path)[0]


class _FileSink:
    """Writes what arrives to a file and hashes it on the way."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.handle.write(chunk)
        self.digest.update(chunk)
        self.size += len(chunk)


def _download(session, args: dict, dest: str, ctx: Context) -> tuple[str, int]:
    directory = os.path.dirname(os.path.abspath(dest))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".runbook-fetch.", dir=directory)
    except OSError as exc:
        raise ActionError(f"cannot write into {directory}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            sink = _FileSink(handle)
            done = session.run(["cat", "--", args["src"]], ctx, stdout=sink)
        if done.rc != 0:
            last = (done.stderr.strip().splitlines() or [f"rc={done.rc}"])[-1][:200]
            raise ActionError(f"download of {session.name}:{args['src']} failed: {last}")
        os.chmod(tmp, int(args.get("mode") or "0600", 8))
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return sink.digest.hexdigest(), sink.size
