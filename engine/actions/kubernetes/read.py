"""``kubernetes.get`` and ``kubernetes.wait``: the read-only verbs (pre-flight probes in a
rehearsal, unless they look at something a planned step changes)."""
from __future__ import annotations

import json
from typing import Any

from engine.actions.base import ActionError, Context, Result
from engine.actions.kubernetes.common import (KubeAction, one_of_name_or_selector, require_name,
                                              seconds, summary)
from engine.actions.kubernetes.diff import without_secrets
from engine.actions.kubernetes.objects import Located, locate
from engine.actions.kubernetes.refs import REF_PROPS, SELECTOR_PROPS, TIMEOUT_PROP, ObjectRef, schema
from engine.actions.kubernetes.rollout import ROLLOUT_KINDS, RolloutFailed, condition_state, rollout_state
from engine.actions.kubernetes.waiting import wait_until
from engine.templating import TemplateFailure

__all__ = ["Get", "Wait"]


class Get(KubeAction):
    """Read an object (`object`) or the objects a selector picks (`items`)."""

    name = "kubernetes.get"
    mutates = False
    args_schema = schema({
        **REF_PROPS, **SELECTOR_PROPS,
        "missing_ok": {"type": "boolean", "default": False,
                       "description": "A missing object is not an error: object is null, exists false"},
    }, ["kind"])

    def plan(self, args: dict, ctx: Context) -> str:
        return f"get {ObjectRef.from_args(args).shown()}"

    def run(self, args: dict, ctx: Context) -> Result:
        one_of_name_or_selector(args, "kubernetes.get")
        located = locate(ctx, ObjectRef.from_args(args))
        if args.get("name"):
            return _got_one(ctx, located, bool(args.get("missing_ok")))
        items, _ = located.list_items(ctx)
        return Result(ok=True, data={"items": without_secrets(items), "count": len(items)},
                      message=f"{len(items)} × {located.shown()}")


def _got_one(ctx, located: Located, missing_ok: bool) -> Result:
    obj = located.read(ctx, missing_ok=missing_ok)
    if obj is None:
        return Result(ok=True, data={"object": None, "exists": False},
                      message=f"{located.shown()} does not exist")
    said = summary(obj)
    return Result(ok=True, data={"object": without_secrets(obj), "exists": True},
                  message=f"{located.shown()}" + (f": {said}" if said else ""))


class Wait(KubeAction):
    """Wait for a rollout (kubectl's rule), a condition, an expression over the object, its existence or its deletion."""

    name = "kubernetes.wait"
    mutates = False
    raw_args = ("that", "fail_if")
    args_schema = schema({
        **REF_PROPS, **SELECTOR_PROPS,
        "for": {"enum": ["rollout", "deleted", "exists"],
                "description": "rollout: kubectl's rollout-status rule (Deployment, StatefulSet, "
                               "DaemonSet); deleted; exists"},
        "condition": {"type": "object", "additionalProperties": False, "required": ["type"],
                      "properties": {"type": {"type": "string", "minLength": 1},
                                     "status": {"type": ["string", "boolean"], "default": "True"},
                                     "reason": {"type": "string"}},
                      "description": "A status condition, e.g. {type: Available, status: 'True'}"},
        "that": {"type": "string", "minLength": 1,
                 "description": "An expression over `object` (or `items` with a selector), e.g. "
                                "object.status.currentPrimary == 'postgres-cluster-2'"},
        "fail_if": {"type": "string", "minLength": 1,
                    "description": "An expression that ends the wait with a failure at once, e.g. "
                                   "object.status.operationState.phase in ['Failed', 'Error']"},
        "timeout": TIMEOUT_PROP,
        "interval": {"type": ["string", "number"],
                     "description": "Polling interval when watching is not possible (default 1s)"},
    }, ["kind"], oneOf=[{"required": ["for"]}, {"required": ["condition"]}, {"required": ["that"]}])

    def plan(self, args: dict, ctx: Context) -> str:
        what = _what(args)
        return f"wait for {what} of {ObjectRef.from_args(args).shown()} " \
               f"(up to {seconds(args.get('timeout')):g}s)"

    def run(self, args: dict, ctx: Context) -> Result:
        _check_wait_args(args)
        located = locate(ctx, ObjectRef.from_args(args))
        judge = _failing_fast(ctx, args, _judge(args, ctx, located))
        try:
            state, message, waited = wait_until(ctx, located, judge, seconds(args.get("timeout")),
                                                seconds(args.get("interval"), 1.0))
        except RolloutFailed as exc:
            raise ActionError(f"{located.shown()}: rollout failed: {exc}") from None
        data = {"elapsed_waiting": waited}
        data["object" if args.get("name") else "items"] = without_secrets(state)
        return Result(ok=True, data=data, message=f"{located.shown()}: {message} after {waited:g}s")


def _what(args: dict) -> str:
    if args.get("for"):
        return args["for"]
    if args.get("condition"):
        return f"condition {args['condition'].get('type')}={args['condition'].get('status', 'True')}"
    return f"'{args.get('that')}'"


def _check_wait_args(args: dict) -> None:
    if args.get("for") == "rollout":
        require_name(args, "kubernetes.wait for: rollout")
    one_of_name_or_selector(args, "kubernetes.wait")


def _judge(args: dict, ctx: Context, located: Located):
    """The function that tells from the current state whether the wait is over."""
    if args.get("for") == "rollout":
        if located.kind not in ROLLOUT_KINDS:
            raise ActionError(f"for: rollout works on {', '.join(ROLLOUT_KINDS)}, not {located.kind}")
        return lambda obj: (False, "the object does not exist") if obj is None else rollout_state(obj)
    if args.get("for") == "deleted":
        return lambda state: (not state, "gone" if not state else "still there")
    if args.get("for") == "exists":
        return lambda state: (bool(state), "exists" if state else "does not exist yet")
    if args.get("condition"):
        wanted = dict(args["condition"])
        wanted["status"] = _condition_status(wanted.get("status", "True"))
        return lambda state: _all(state, lambda obj: condition_state(obj, wanted))
    return lambda state: _expression(ctx, args["that"], state, bool(args.get("name")))


def _failing_fast(ctx: Context, args: dict, judge):
    """``judge``, preceded by the step's ``fail_if`` (a failed sync need not time out)."""
    fail_if = args.get("fail_if")
    if not fail_if:
        return judge

    def judged(state: Any) -> tuple[bool, str]:
        failed, _ = _expression(ctx, fail_if, state, bool(args.get("name")))
        if failed:
            raise ActionError(f"fail_if holds: {fail_if} ({_status_phrase(state)})")
        return judge(state)
    return judged


def _status_phrase(state: Any) -> str:
    if isinstance(state, dict):
        text = json.dumps(state.get("status") or {}, sort_keys=True, default=str)
        return "status " + (text if len(text) <= 200 else text[:197] + "...")
    return f"{len(state or [])} objects"


def _condition_status(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _all(state: Any, judge) -> tuple[bool, str]:
    """A named object, or every object of a selection (none yet: keep waiting)."""
    if state is None or state == []:
        return False, "no object yet"
    for obj in state if isinstance(state, list) else [state]:
        done, message = judge(obj)
        if not done:
            return False, f"{obj['metadata']['name']}: {message}"
    return True, message


def _expression(ctx: Context, expression: str, state: Any, named: bool) -> tuple[bool, str]:
    names = {"object": state} if named else {"items": state or [], "object": None}
    if named and state is None:
        return False, "the object does not exist"
    try:
        held = ctx.evaluate(expression, names)
    except TemplateFailure as exc:  # a field not there yet (status not set): keep waiting
        return False, f"{expression}: {exc}"
    return bool(held), (f"{expression} holds" if held else f"{expression} is not true yet")
