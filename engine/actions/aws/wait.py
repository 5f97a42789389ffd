"""``aws.wait``: wait for a botocore waiter (``db_instance_available``) or until a
JMESPath expression over a read-only operation's response holds.

Read-only. In a dry-run it looks once instead of waiting: a condition that is not
met yet is a finding (it may only be unmet because a planned change was not made),
and the rehearsal does not sit out the timeout.
"""
from __future__ import annotations

import math
import time
from typing import Any

from engine.actions.aws import model
from engine.actions.aws.common import poll, schema, seconds, service_touched, DURATION_PROP
from engine.actions.base import Action, ActionError, Context, Result
from engine.connections.aws import api_error, call, session_for

DEFAULT_TIMEOUT = 600.0


class Wait(Action):
    """Wait for an AWS waiter, or until a JMESPath condition on a read-only call holds."""

    name = "aws.wait"
    mutates = False
    args_schema = schema({
        "service": {"type": "string", "minLength": 1},
        "waiter": {"type": "string", "minLength": 1,
                   "description": "botocore waiter: db_instance_available, nodegroup_active …"},
        "operation": {"type": "string", "minLength": 1,
                      "description": "a read-only operation to poll (with `until`)"},
        "until": {"type": "string", "minLength": 1,
                  "description": "JMESPath over the response; done when it is truthy, e.g. "
                                 "\"DBInstances[0].DBInstanceStatus == 'available'\""},
        "params": {"type": "object"},
        "timeout": {**DURATION_PROP, "description": "give up after (default 10m)"},
        "delay": {**DURATION_PROP, "description": "between checks (default: the waiter's, or 5s)"},
    }, ["service"], oneOf=[{"required": ["waiter"]}, {"required": ["operation", "until"]}])

    @classmethod
    def literal_arg_errors(cls, args: Any):
        if model.is_templated(args.get("service")):
            return []
        try:
            model.service_model(args["service"])
            if "waiter" in args and not model.is_templated(args["waiter"]):
                model.waiter_name(args["service"], args["waiter"])
        except ActionError as exc:
            return [(("waiter",) if "has no waiter" in str(exc) else ("service",), str(exc))]
        if "operation" in args and not model.is_templated(args["operation"]):
            return _operation_problems(args)
        return []

    def touches(self, args: dict, ctx: Context) -> set[str]:
        return service_touched(ctx, str(args.get("service", "")).lower())

    def plan(self, args: dict, ctx: Context) -> str:
        what = _what(args)
        return f"wait up to {seconds(args.get('timeout'), DEFAULT_TIMEOUT):g} s for {what}"

    def run(self, args: dict, ctx: Context) -> Result:
        started = time.monotonic()
        if "waiter" in args:
            data = _run_waiter(args, ctx)
        else:
            data = _run_until(args, ctx)
        data["elapsed"] = round(time.monotonic() - started, 3)
        return Result(ok=True, changed=False, data=data,
                      message=f"{_what(args)}: done in {data['elapsed']:.1f} s")


def _what(args: dict) -> str:
    if "waiter" in args:
        return f"{args['service']} waiter {args['waiter']}"
    return f"{args['service']} {args['operation']} until {args['until']}"


def _operation_problems(args: dict) -> list[tuple[tuple, str]]:
    try:
        op = model.operation_model(args["service"], args["operation"])
    except ActionError as exc:
        return [(("operation",), str(exc))]
    problems = [(("params",) + path, message)
                for path, message in model.param_problems(op, args.get("params") or {})]
    until = args.get("until")
    if isinstance(until, str) and not model.is_templated(until) and model.jmespath_problem(until):
        problems.append((("until",), model.jmespath_problem(until)))
    if not model.is_read_only(args["service"], op.name):
        problems.append((("operation",), f"{op.name} is not read-only: aws.wait only polls "
                                         f"Describe/Get/List/… operations"))
    return problems


def _run_waiter(args: dict, ctx: Context) -> dict:
    from botocore import xform_name
    from botocore.exceptions import WaiterError

    service = args["service"]
    name = model.waiter_name(service, args["waiter"])
    session = session_for(ctx)
    client = session.client(service, args.get("region"))
    waiter = client.get_waiter(xform_name(name))
    delay = seconds(args.get("delay"), waiter.config.delay)
    timeout = ctx.time_left(seconds(args.get("timeout"), DEFAULT_TIMEOUT))
    attempts = 1 if ctx.dry_run else max(1, math.ceil(timeout / max(delay, 0.001)) + 1)
    try:
        waiter.wait(**(args.get("params") or {}),
                    WaiterConfig={"Delay": delay, "MaxAttempts": attempts})
    except WaiterError as exc:
        raise _waiter_failure(session, service, name, exc, ctx, args) from None
    except Exception as exc:
        raise api_error(session, service, f"waiter {name}", exc) from None
    return {"waiter": name}


def _waiter_failure(session, service: str, name: str, exc, ctx: Context, args: dict) -> ActionError:
    reason = str(getattr(exc, "kwargs", {}).get("reason") or exc)
    last = getattr(exc, "last_response", None) or {}
    code = (last.get("Error") or {}).get("Code")
    detail = f"{reason}" + (f" (last error: {code})" if code else "")
    if ctx.dry_run and "Max attempts exceeded" in reason:
        detail = (f"not met yet (a rehearsal checks once; the real run waits up to "
                  f"{seconds(args.get('timeout'), DEFAULT_TIMEOUT):g} s)")
    return ActionError(session.clean(f"{service} waiter {name}: {detail}"))


def _run_until(args: dict, ctx: Context) -> dict:
    problems = _operation_problems(args)
    if problems:
        raise ActionError(problems[0][1])
    op = model.operation_model(args["service"], args["operation"])
    seen: dict[str, Any] = {}

    def probe() -> tuple[bool, str]:
        raw = call(ctx, args["service"], op.name, args.get("params") or {}, region=args.get("region"))
        body = {k: v for k, v in raw.items() if k != "ResponseMetadata"}
        seen["response"] = model.mask_secrets(model.json_safe(body), op.output_shape, [])
        seen["value"] = model.jmespath_search(args["until"], seen["response"], "until")
        return bool(seen["value"]), f"{args['until']} is {seen['value']!r}"

    timeout = seconds(args.get("timeout"), DEFAULT_TIMEOUT)
    if ctx.dry_run:
        done, state = probe()
        if not done:
            raise ActionError(f"{_what(args)}: not met yet ({state}); a rehearsal checks once, "
                              f"the real run waits up to {timeout:g} s")
    else:
        poll(ctx, probe, timeout=timeout, delay=seconds(args.get("delay"), 5.0), what=_what(args))
    return {"response": seen["response"], "selected": seen["value"]}

