"""``ssh.copy``: upload a local file (or literal content) to the target's host.

Idempotent like Ansible's ``copy``: nothing is sent when the remote file already has
the same SHA-256 (and the asked mode and owner). The bytes go through the remote
command's standard input into a temporary file beside ``dest``, which is renamed over
``dest`` only when complete: a broken transfer never leaves half a file. With the
target's ``become`` the write happens as that user (sudo -n), like every remote step.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from engine.actions.base import Action, ActionError, Context, Result
from engine.actions.files import sha256_of
from engine.actions.ssh.remote_file import RemoteFile, probe, short, size_text

_MODE = {"type": "string", "pattern": "^0?[0-7]{3}$",
         "description": "Octal permissions as a quoted string, e.g. \"0640\" (unquoted YAML "
                        "0640 would be the number 416)."}

# $1 dest, $2 mode (may be empty), $3 owner[:group] (may be empty); stdin: the bytes
_UPLOAD = ('t=$(mktemp "$(dirname -- "$1")/.runbook-upload.XXXXXX") || exit 1; '
           'trap \'rm -f -- "$t"\' EXIT; cat > "$t" || exit 1; '
           'if [ -e "$1" ] && [ "$(id -u)" = 0 ]; then chown --reference="$1" -- "$t" || exit 1; fi; '
           'if [ -n "$2" ]; then chmod "$2" -- "$t"; elif [ -e "$1" ]; then '
           'chmod --reference="$1" -- "$t"; else chmod 0644 -- "$t"; fi || exit 1; '
           'if [ -n "$3" ]; then chown -- "$3" "$t" || exit 1; fi; mv -f -- "$t" "$1"')


@dataclass(frozen=True)
class Want:
    """What the remote file should be."""

    dest: str
    sha256: str
    bytes: int
    mode: int | None
    owner: str | None
    group: str | None


class Copy(Action):
    """Upload a local file or literal content to the target's host (no change when the sha256 matches)."""

    name = "ssh.copy"
    mutates = True
    sensitive_args = ("content",)
    args_schema = {
        "type": "object", "additionalProperties": False, "required": ["dest"],
        "properties": {
            "src": {"type": "string", "minLength": 1,
                    "description": "Local file to upload (on the machine running the engine)."},
            "content": {"type": "string", "description": "Literal content to write instead of src."},
            "dest": {"type": "string", "minLength": 1,
                     "description": "Path on the host; ending in / means src's name in that directory."},
            "mode": _MODE,
            "owner": {"type": "string", "minLength": 1, "description": "Owner on the host (needs become)."},
            "group": {"type": "string", "minLength": 1, "description": "Group on the host."},
        },
        "oneOf": [{"required": ["src"]}, {"required": ["content"]}],
    }

    def plan(self, args, ctx: Context) -> str:
        session = _session(ctx)
        want = _want(args)
        have = probe(session, want.dest, ctx)
        changes = _changes(want, have)
        where = f"{session.name}:{want.dest}"
        if not changes:
            return f"no change: {where} already has sha256 {short(want.sha256)}" + session.note()
        return f"on {session.name}: {_describe(changes, want, have, args)}" + session.note()

    def run(self, args, ctx: Context) -> Result:
        from engine.actions.core import remote_result

        session = _session(ctx)
        want = _want(args)
        have = probe(session, want.dest, ctx)
        changes = _changes(want, have)
        if "content" in changes:
            _upload(session, args, want, ctx)
        elif changes:
            _set_attributes(session, want, changes, ctx)
        now = probe(session, want.dest, ctx)
        if now is None or now.sha256 != want.sha256:
            raise ActionError(f"upload to {session.name}:{want.dest} did not verify: sha256 "
                              f"{short(now.sha256 if now else None)}, expected {short(want.sha256)}")
        data = {"dest": want.dest, "sha256": now.sha256, "bytes": now.bytes, "mode": now.mode_text,
                "owner": now.owner, "group": now.group, "changes": changes,
                "previous_sha256": have.sha256 if have else None}
        message = _describe(changes, want, have, args) if changes else "no change: already there"
        return remote_result(Result(ok=True, changed=bool(changes), data=data, message=message),
                             session)


def _session(ctx: Context):
    from engine.connections.ssh import required

    return required(ctx, "ssh.copy")


def _want(args: dict) -> Want:
    dest = args["dest"]
    if "src" in args:
        if dest.endswith("/"):
            dest += os.path.basename(args["src"])
        digest, size = sha256_of(args["src"])
    else:
        if dest.endswith("/"):
            raise ActionError("dest ends with '/' but there is no src to take a name from")
        raw = args["content"].encode()
        digest, size = hashlib.sha256(raw).hexdigest(), len(raw)
    mode = int(args["mode"], 8) if args.get("mode") else None
    return Want(dest, digest, size, mode, args.get("owner"), args.get("group"))


def _changes(want: Want, have: RemoteFile | None) -> list[str]:
    """What differs: ``content``, ``mode``, ``owner`` (a new file differs in content)."""
    if have is None or have.sha256 != want.sha256:
        return ["content"]
    changes = []
    if want.mode is not None and want.mode != have.mode:
        changes.append("mode")
    if (want.owner and want.owner != have.owner) or (want.group and want.group != have.group):
        changes.append("owner")
    return changes


def _describe(changes: list[str], want: Want, have: RemoteFile | None, args: dict) -> str:
    source = args.get("src", "content")
    if "content" in changes:
        if have is None:
            return f"upload {source} → {want.dest} (new file, {size_text(want.bytes)})"
        return (f"upload {source} → {want.dest} (sha256 {short(have.sha256)} → "
                f"{short(want.sha256)}, {size_text(want.bytes)})")
    parts = []
    if "mode" in changes:
        parts.append(f"mode {have.mode_text} → {want.mode:04o}")
    if "owner" in changes:
        parts.append(f"owner {have.owner}:{have.group} → {_owner(want) or '?'}")
    return f"set {', '.join(parts)} of {want.dest}"


def _owner(want: Want) -> str:
    if want.owner and want.group:
        return f"{want.owner}:{want.group}"
    return want.owner or (f":{want.group}" if want.group else "")


def _upload(session, args: dict, want: Want, ctx: Context) -> None:
    mode = f"{want.mode:04o}" if want.mode is not None else ""
    argv = ["sh", "-c", _UPLOAD, "sh", want.dest, mode, _owner(want)]
    if "src" in args:
        done = session.run(argv, ctx, stdin_file=args["src"])
    else:
        done = session.run(argv, ctx, stdin=args["content"])
    if done.rc != 0:
        last = (done.stderr.strip().splitlines() or [f"rc={done.rc}"])[-1][:200]
        raise ActionError(f"upload to {session.name}:{want.dest} failed: {last}")


def _set_attributes(session, want: Want, changes: list[str], ctx: Context) -> None:
    commands = []
    if "mode" in changes:
        commands.append(["chmod", f"{want.mode:04o}", "--", want.dest])
    if "owner" in changes:
        commands.append(["chown", _owner(want), "--", want.dest])
    for argv in commands:
        done = session.run(argv, ctx)
        if done.rc != 0:
            last = (done.stderr.strip().splitlines() or [f"rc={done.rc}"])[-1][:200]
            raise ActionError(f"{argv[0]} of {session.name}:{want.dest} failed: {last}")
