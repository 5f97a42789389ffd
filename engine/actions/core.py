"""Core actions: command, shell, assert, fail, set_fact, pause, wait_for, debug.

``command``, ``shell`` and ``wait_for`` run on the step's host when its target has an
``ssh:`` block (``on_host``), else on the machine running the engine, through the
same small interface (``run_process`` / ``Session.run``: argv in, ``Completed`` out).
"""
from __future__ import annotations

import os
import shlex
import socket
import time
from dataclasses import replace

from engine.actions.base import Action, ActionError, Context, Result
from engine.connections.local import run_process
from engine.durations import parse_duration

_DURATION = {"type": ["string", "number"], "description": "A duration: 90, 90s, 15m, 1h30m."}
_RC_LIST = {"type": "array", "items": {"type": "integer"},
            "description": "Return codes that count as success (default [0])."}
_ENV = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]},
        "description": "Extra environment variables."}


def on_host(ctx: Context):
    """The SSH session of the step's target when it has an ``ssh:`` block (connected once
    per run: a dry-run's plan() connecting is the pre-flight probe), else None: local."""
    if "ssh" not in (ctx.target or {}):
        return None
    from engine.connections.ssh import remote  # asyncio/asyncssh only when a step needs them

    return remote(ctx)


def where(session) -> str:
    """The plan's prefix: ``on db1: `` for a remote step, nothing for a local one."""
    return f"on {session.name}: " if session is not None else ""


def remote_result(result: Result, session) -> Result:
    """Record where a remote step ran (host key, checked or not, become) in its data."""
    if session is None:
        return result
    message = result.message
    if not result.ok and not message.startswith(where(session)):
        message = where(session) + message  # a fleet's failures say which host
    message = (message + session.note()).strip()
    return replace(result, data={**result.data, "ssh": session.describe()}, message=message)


def run_argv(argv: list[str], ctx: Context, session, **options):
    if session is not None:
        return session.run(argv, ctx, **options)
    return run_process(argv, ctx, **options)


def _process_result(done, ok_rc) -> Result:
    ok = done.rc in ok_rc
    # As in Ansible: the final newline is dropped, and lines are offered too.
    stdout, stderr = done.stdout.rstrip("\r\n"), done.stderr.rstrip("\r\n")
    data = {"rc": done.rc, "stdout": stdout, "stderr": stderr,
            "stdout_lines": stdout.splitlines()}
    dropped = {k: v for k, v in (("stdout", done.stdout_dropped),
                                 ("stderr", done.stderr_dropped)) if v}
    if dropped:  # capped while reading: head and tail kept, the middle counted
        data["dropped_bytes"] = dropped
    message = "" if ok else f"exited with rc={done.rc}" + _tail(done.stderr or done.stdout)
    return Result(ok=ok, changed=True, data=data, message=message)


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return f": {lines[-1][:300]}" if lines else ""


class Command(Action):
    """Run a program with an argument list (never through a shell)."""

    name = "command"
    mutates = True
    args_schema = {
        "description": "An argv list, a string split like a shell would (but not run by one), "
                       "or a mapping.",
        "oneOf": [
            {"type": "array", "items": {"type": ["string", "number"]}, "minItems": 1},
            {"type": "string", "minLength": 1},
            {"type": "object", "additionalProperties": False, "required": ["argv"],
             "properties": {
                 "argv": {"type": ["array", "string"], "items": {"type": ["string", "number"]},
                          "description": "The program and its arguments."},
                 "chdir": {"type": "string", "description": "Working directory."},
                 "env": _ENV,
                 "stdin": {"type": "string", "description": "Text fed to standard input."},
                 "ok_rc": _RC_LIST,
             }},
        ],
    }

    def _spec(self, args) -> dict:
        spec = args if isinstance(args, dict) else {"argv": args}
        argv = spec["argv"]
        if isinstance(argv, str):
            try:
                argv = shlex.split(argv)
            except ValueError as exc:
                raise ActionError(f"cannot split command line: {exc}") from None
        if not argv:
            raise ActionError("empty command")
        return {**spec, "argv": [str(a) for a in argv]}

    def plan(self, args, ctx: Context) -> str:
        spec = self._spec(args)
        session = on_host(ctx)
        chdir = f" (in {spec['chdir']})" if spec.get("chdir") else ""
        note = session.note() if session else ""
        return where(session) + "run " + shlex.join(spec["argv"]) + chdir + note

    def run(self, args, ctx: Context) -> Result:
        spec = self._spec(args)
        session = on_host(ctx)
        done = run_argv(spec["argv"], ctx, session, chdir=spec.get("chdir"), env=spec.get("env"),
                        stdin=spec.get("stdin"))
        return remote_result(_process_result(done, spec.get("ok_rc") or [0]), session)


class Shell(Action):
    """Run a script with /bin/sh -c (only when you need pipes or redirection)."""

    name = "shell"
    mutates = True
    args_schema = {
        "oneOf": [
            {"type": "string", "minLength": 1, "description": "The script."},
            {"type": "object", "additionalProperties": False, "required": ["cmd"],
             "properties": {
                 "cmd": {"type": "string", "description": "The script."},
                 "chdir": {"type": "string", "description": "Working directory."},
                 "env": _ENV,
                 "stdin": {"type": "string"},
                 "executable": {"type": "string", "description": "Shell to use (default /bin/sh)."},
                 "ok_rc": _RC_LIST,
             }},
        ],
    }

    def plan(self, args, ctx: Context) -> str:
        script = args if isinstance(args, str) else args["cmd"]
        session = on_host(ctx)
        return where(session) + "sh -c: " + script + (session.note() if session else "")

    def run(self, args, ctx: Context) -> Result:
        spec = args if isinstance(args, dict) else {"cmd": args}
        argv = [spec.get("executable", "/bin/sh"), "-c", spec["cmd"]]
        session = on_host(ctx)
        done = run_argv(argv, ctx, session, chdir=spec.get("chdir"), env=spec.get("env"),
                        stdin=spec.get("stdin"))
        return remote_result(_process_result(done, spec.get("ok_rc") or [0]), session)


class Assert(Action):
    """Check that expressions hold; fail the step with a message if not."""

    name = "assert"
    mutates = False
    raw_args = ("that",)
    args_schema = {
        "type": "object", "additionalProperties": False, "required": ["that"],
        "properties": {
            "that": {"type": ["string", "array", "boolean"], "items": {"type": "string"},
                     "description": "Expression(s) that must all hold."},
            "message": {"type": "string", "description": "Shown when a check fails."},
            "success_msg": {"type": "string"},
        },
    }

    def plan(self, args, ctx: Context) -> str:
        that = args["that"] if isinstance(args["that"], list) else [args["that"]]
        return "check " + " and ".join(str(t) for t in that)

    def run(self, args, ctx: Context) -> Result:
        that = args["that"] if isinstance(args["that"], list) else [args["that"]]
        for expression in that:
            if not ctx.evaluate(expression):
                message = args.get("message") or f"assertion failed: {expression}"
                return Result(ok=False, data={"failed_expression": str(expression)},
                              message=message)
        return Result(ok=True, message=args.get("success_msg", "all assertions passed"))


class Fail(Action):
    """Stop the run with a message (use with `when`)."""

    name = "fail"
    mutates = False
    args_schema = {"type": "object", "additionalProperties": False,
                   "properties": {"message": {"type": "string", "description": "Why the run stops."}}}

    def plan(self, args, ctx: Context) -> str:
        return "fail: " + str(args.get("message", "failed as requested"))

    def run(self, args, ctx: Context) -> Result:
        return Result(ok=False, message=str(args.get("message", "failed as requested")))


class SetFact(Action):
    """Set variables for the following steps."""

    name = "set_fact"
    mutates = False
    sets_facts = True
    args_schema = {"type": "object", "minProperties": 1,
                   "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                   "description": "Names and values (templates allowed)."}

    def plan(self, args, ctx: Context) -> str:
        return "set " + ", ".join(args)

    def run(self, args, ctx: Context) -> Result:
        return Result(ok=True, changed=False, data=dict(args))


class Debug(Action):
    """Show a message or a variable in the run's output."""

    name = "debug"
    mutates = False
    args_schema = {"type": "object", "additionalProperties": False,
                   "properties": {"msg": {"description": "Text or value to show."}}}

    def run(self, args, ctx: Context) -> Result:
        msg = args.get("msg", "")
        return Result(ok=True, data={"msg": msg}, message=str(msg))


class Pause(Action):
    """Wait for a fixed time (skipped in a dry-run)."""

    name = "pause"
    mutates = False
    args_schema = {"type": "object", "additionalProperties": False, "required": ["duration"],
                   "properties": {"duration": _DURATION,
                                  "reason": {"type": "string", "description": "Why we wait."}}}

    def plan(self, args, ctx: Context) -> str:
        return f"pause {args['duration']}"

    def run(self, args, ctx: Context) -> Result:
        seconds = _seconds(args["duration"])
        if ctx.dry_run:
            return Result(ok=True, message=f"would pause {args['duration']}")
        if ctx.cancelled.wait(min(seconds, ctx.time_left(seconds))):
            raise ActionError("cancelled")
        return Result(ok=True, data={"seconds": seconds})


class WaitFor(Action):
    """Wait until a TCP port accepts (or refuses) connections, or a path exists (or not)."""

    name = "wait_for"
    mutates = False
    args_schema = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "host": {"type": "string", "description": "Host for `port` (default 127.0.0.1)."},
            "port": {"type": ["integer", "string"], "description": "TCP port to probe."},
            "path": {"type": "string", "description": "File or directory to wait for."},
            "state": {"enum": ["started", "stopped", "present", "absent"],
                      "description": "started/present (default) or stopped/absent."},
            "timeout": _DURATION,
            "sleep": _DURATION,
        },
        "oneOf": [{"required": ["port"]}, {"required": ["path"]}],
    }

    def plan(self, args, ctx: Context) -> str:
        session = on_host(ctx)
        return where(session) + f"wait until {self._what(args)} is {args.get('state', 'started')}"

    def _what(self, args) -> str:
        if "port" in args:
            return f"{args.get('host', '127.0.0.1')}:{args['port']}"
        return str(args["path"])

    def run(self, args, ctx: Context) -> Result:
        want_up = args.get("state", "started") in ("started", "present")
        timeout = _seconds(args.get("timeout", 300))
        sleep = _seconds(args.get("sleep", 0.2))
        end = time.monotonic() + (ctx.time_left(timeout) or 0)
        start = time.monotonic()
        session = on_host(ctx)
        while True:
            if self._probe(args, ctx, session) == want_up:
                data = {"elapsed": round(time.monotonic() - start, 3)}
                return remote_result(Result(ok=True, data=data), session)
            if time.monotonic() >= end or ctx.cancelled.is_set():
                state = "up" if want_up else "down"
                raise ActionError(f"{where(session)}{self._what(args)} was not {state} "
                                  f"after {timeout:g}s")
            if ctx.cancelled.wait(sleep):
                raise ActionError("cancelled")

    def _probe(self, args, ctx: Context, session) -> bool:
        if session is not None:  # seen from the target's host, as Ansible's wait_for is
            if "path" in args:
                return session.run(["test", "-e", args["path"]], ctx).rc == 0
            return session.port_open(args.get("host", "127.0.0.1"), int(args["port"]), ctx)
        if "path" in args:
            return os.path.exists(args["path"])
        try:
            with socket.create_connection((args.get("host", "127.0.0.1"), int(args["port"])),
                                          timeout=1):
                return True
        except OSError:
            return False


def _seconds(value) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ActionError(str(exc)) from None
