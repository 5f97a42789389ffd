"""``aws.call``: any AWS API operation, rehearsed honestly.

Read-only or not is decided from the operation's name (``model.is_read_only``: a
Describe/Get/List/Head/Search/Lookup/Query/Scan/Select/Filter/BatchGet/BatchDescribe
verb, minus a few documented exceptions); the step's ``mutates:`` overrides it. A
read-only call runs in a dry-run like any probe. A mutating call's plan checks its
parameters offline against botocore's model, applies the engine's own checks where
AWS is stricter than moto (Route 53 batches, scaling bounds, promotions) and, for
EC2, asks the service itself with ``DryRun=True``.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from engine.actions.aws import model
from engine.actions.aws.common import schema, service_touched
from engine.actions.aws.rds import promote_problem
from engine.actions.aws.route53 import change_batch_problem
from engine.actions.aws.scaling import asg_update_problem, eks_update_problem
from engine.actions.base import Action, ActionError, Context, Result
from engine.connections.aws import AwsApiError, call, paginate

#: (service, operation) -> the engine's check: why AWS would refuse the call, or None
GUARDS: dict[tuple[str, str], Callable[[Context, dict, str | None], str | None]] = {
    ("route53", "ChangeResourceRecordSets"): change_batch_problem,
    ("eks", "UpdateNodegroupConfig"): eks_update_problem,
    ("autoscaling", "UpdateAutoScalingGroup"): asg_update_problem,
    ("autoscaling", "SetDesiredCapacity"): asg_update_problem,
    ("rds", "PromoteReadReplica"): promote_problem,
}
SHOWN_PARAMS = 160


class Call(Action):
    """Call any AWS API operation (read-only for Describe/List/Get/…; mutating otherwise)."""

    name = "aws.call"
    mutates = True
    args_schema = schema({
        "service": {"type": "string", "minLength": 1,
                    "description": "botocore service name: ec2, rds, route53, s3, eks, autoscaling …"},
        "operation": {"type": "string", "minLength": 1,
                      "description": "DescribeDBInstances or describe_db_instances"},
        "params": {"type": "object", "description": "the operation's parameters, as in boto3"},
        "paginate": {"type": "boolean", "description": "follow every page and merge them"},
        "select": {"type": "string", "minLength": 1,
                   "description": "JMESPath expression applied to the response -> `selected`"},
    }, ["service", "operation"])

    @classmethod
    def mutates_for(cls, args: Any) -> bool:
        named = _names(args)
        if named is None:
            return True  # not known yet: assume the worst
        try:
            service, operation = named[0], model.canonical_operation(*named)
        except ActionError:
            return True
        return not model.is_read_only(service, operation)

    @classmethod
    def literal_arg_errors(cls, args: Any):
        if model.is_templated(args.get("service")):
            return []
        try:
            model.service_model(args["service"])
        except ActionError as exc:
            return [(("service",), str(exc))]
        if model.is_templated(args.get("operation")):
            return []
        try:
            op = model.operation_model(args["service"], args["operation"])
        except ActionError as exc:
            return [(("operation",), str(exc))]
        return [(("params",) + path, message) for path, message in
                model.param_problems(op, args.get("params") or {})] + _option_problems(args, op)

    def touches(self, args: dict, ctx: Context) -> set[str]:
        return service_touched(ctx, str(args.get("service", "")).lower())

    def plan(self, args: dict, ctx: Context) -> str:
        service, op = _resolved(args)
        shown = f"{service} {op.name}{_shown_params(args.get('params'))}"
        if model.is_read_only(service, op.name):
            return f"call {shown} (read-only)"
        problems = model.param_problems(op, args.get("params") or {})
        if problems:
            return f"refused: {shown}: {problems[0][1]}"
        notes = ["parameters valid per the botocore model"]
        guard = GUARDS.get((service, op.name))
        refusal = guard(ctx, args.get("params") or {}, args.get("region")) if guard else None
        if refusal:
            return f"refused: {shown}: {refusal}"
        if service == "ec2" and "DryRun" in (op.input_shape.members if op.input_shape else {}):
            notes.append(_ec2_dry_run(ctx, op.name, args))
        return f"call {shown} ({'; '.join(notes)})"

    def run(self, args: dict, ctx: Context) -> Result:
        service, op = _resolved(args)
        params = args.get("params") or {}
        problems = model.param_problems(op, params)
        if problems:
            raise ActionError(f"{service} {op.name}: invalid parameters: "
                              + "; ".join(message for _path, message in problems))
        read_only = model.is_read_only(service, op.name)
        guard = None if read_only else GUARDS.get((service, op.name))
        refusal = guard(ctx, params, args.get("region")) if guard else None
        if refusal:
            raise ActionError(f"{service} {op.name} refused: {refusal}")
        fetch = paginate if args.get("paginate") else call
        raw = fetch(ctx, service, op.name, params, region=args.get("region"))
        return _result(ctx, service, op, raw, args, changed=not read_only)


def _names(args: Any) -> tuple[str, str] | None:
    if not isinstance(args, dict):
        return None
    service, operation = args.get("service"), args.get("operation")
    if not isinstance(service, str) or not isinstance(operation, str):
        return None
    if model.is_templated(service) or model.is_templated(operation):
        return None
    return service, operation


def _resolved(args: dict):
    op = model.operation_model(args["service"], args["operation"])
    return args["service"], op


def _option_problems(args: dict, op) -> list[tuple[tuple, str]]:
    problems = []
    if args.get("paginate") is True and not model.can_paginate(args["service"], op.name):
        problems.append((("paginate",), f"{args['service']} {op.name} has no paginator "
                                        f"(it answers in one page)"))
    select = args.get("select")
    if isinstance(select, str) and not model.is_templated(select):
        problem = model.jmespath_problem(select)
        if problem:
            problems.append((("select",), problem))
    return problems




def _shown_params(params: Any) -> str:
    if not params:
        return ""
    text = json.dumps(params, default=str, separators=(", ", ": "))
    return " " + (text if len(text) <= SHOWN_PARAMS else text[: SHOWN_PARAMS - 1] + "…")


def _ec2_dry_run(ctx: Context, operation: str, args: dict) -> str:
    """What EC2 itself says about the call with ``DryRun=True``."""
    params = {**(args.get("params") or {}), "DryRun": True}
    try:
        call(ctx, "ec2", operation, params, region=args.get("region"))
    except AwsApiError as exc:
        if exc.code == "DryRunOperation":
            return "EC2 DryRun: would succeed"
        return f"EC2 DryRun: would fail: {str(exc).split(': ', 1)[-1]}"
    return "EC2 DryRun: no verdict (the call answered without DryRunOperation)"


def _result(ctx: Context, service: str, op, raw: dict, args: dict, changed: bool) -> Result:
    request_id = (raw.get("ResponseMetadata") or {}).get("RequestId")
    body = {k: v for k, v in raw.items() if k != "ResponseMetadata"}
    secrets: list[str] = []
    response = model.mask_secrets(model.json_safe(body), op.output_shape, secrets)
    if secrets and ctx.redactor is not None:
        ctx.redactor.add(secrets)  # also masked if a later step echoes them
    data = {"response": response, "request_id": request_id}
    if args.get("select"):
        data["selected"] = model.jmespath_search(args["select"], response, "select")
    return Result(ok=True, changed=changed, data=data,
                  message=f"{service} {op.name}: {_summary(response)}")



def _summary(response: dict) -> str:
    """``DBInstances: 2`` — the sizes of the response's lists, else its keys."""
    lists = [f"{key}: {len(value)}" for key, value in response.items() if isinstance(value, list)]
    if lists:
        return ", ".join(lists[:4])
    return ", ".join(list(response)[:6]) or "ok (empty response)"

