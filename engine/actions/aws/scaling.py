"""Capacity changes: ``aws.eks_scale_nodegroup`` and ``aws.asg_set_capacity``.

AWS refuses a size outside ``min ≤ desired ≤ max`` (moto accepts it), so both verbs
check the bounds themselves — on literal arguments at ``runbook validate`` time, and
against the live values they keep in ``plan()`` and ``run()`` — and return
``previous`` (the sizes before) for a ``rollback:``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.actions.aws.common import (arrow, poll, schema, seconds, service_touched, COUNT_PROP,
                                       DURATION_PROP, WAIT_PROP)
from engine.actions.base import Action, ActionError, Context, Result
from engine.connections.aws import AwsApiError, call


@dataclass(frozen=True)
class Capacity:
    min: int
    max: int
    desired: int

    def text(self, before: "Capacity | None" = None) -> str:
        """``min 0→2, max 10, desired 0→4`` (or the plain sizes without ``before``)."""
        before = before or self
        return (f"min {arrow(before.min, self.min)}, max {arrow(before.max, self.max)}, "
                f"desired {arrow(before.desired, self.desired)}")

    def problem(self, lowest_max: int = 0) -> str | None:
        """Why AWS would refuse these sizes, or None."""
        if self.min < 0 or self.desired < 0:
            return "sizes cannot be negative"
        if self.max < lowest_max:
            return f"max must be at least {lowest_max}"
        if self.min > self.max:
            return f"min {self.min} > max {self.max}"
        if not self.min <= self.desired <= self.max:
            return f"desired {self.desired} is outside min {self.min} .. max {self.max}"
        return None


def merged(current: Capacity, wanted: dict) -> Capacity:
    """``current`` with the sizes the step gives (the rest kept)."""
    return Capacity(min=wanted.get("min", current.min), max=wanted.get("max", current.max),
                    desired=wanted.get("desired", current.desired))


def literal_bounds(args: dict, lowest_max: int = 0) -> list[tuple[tuple, str]]:
    """Bounds that literal arguments alone already break (min > max, desired > max ...)."""
    given = {k: args[k] for k in ("min", "max", "desired") if isinstance(args.get(k), int)}
    pairs = [("min", "max"), ("min", "desired"), ("desired", "max")]
    problems = [((high,), f"{low} {given[low]} > {high} {given[high]}")
                for low, high in pairs if low in given and high in given and given[low] > given[high]]
    if "max" in given and given["max"] < lowest_max:
        problems.append((("max",), f"max must be at least {lowest_max}"))
    return problems


def _sizes(properties: dict) -> dict:
    return {key: {**COUNT_PROP, "description": description}
            for key, description in properties.items()}


# --------------------------------------------------------------------------
# EKS managed node groups
# --------------------------------------------------------------------------

def describe_nodegroup(ctx: Context, cluster: str, nodegroup: str, region: str | None) -> dict:
    return call(ctx, "eks", "DescribeNodegroup", {"clusterName": cluster, "nodegroupName": nodegroup},
                region=region)["nodegroup"]


def _nodegroup_capacity(group: dict) -> Capacity:
    config = group.get("scalingConfig") or {}
    return Capacity(config.get("minSize", 0), config.get("maxSize", 0), config.get("desiredSize", 0))


def eks_update_problem(ctx: Context, params: dict, region: str | None) -> str | None:
    """The engine's check of a raw ``UpdateNodegroupConfig`` (bounds, ACTIVE)."""
    config = params.get("scalingConfig")
    if not config:
        return None
    group = describe_nodegroup(ctx, params.get("clusterName", ""), params.get("nodegroupName", ""),
                               region)
    wanted = {k: config[f"{k}Size"] for k in ("min", "max", "desired") if f"{k}Size" in config}
    return _eks_refusal(group, merged(_nodegroup_capacity(group), wanted))


def _eks_refusal(group: dict, wanted: Capacity) -> str | None:
    problem = wanted.problem(lowest_max=1)
    if problem:
        return f"{problem} (AWS refuses it: InvalidParameterException)"
    if group.get("status") != "ACTIVE":
        return f"the node group is {group.get('status')}; AWS accepts a change only when ACTIVE"
    return None


class ScaleNodegroup(Action):
    """Set an EKS managed node group's min/max/desired size (the sizes not given are kept)."""

    name = "aws.eks_scale_nodegroup"
    mutates = True
    args_schema = schema({
        "cluster": {"type": "string", "minLength": 1},
        "nodegroup": {"type": "string", "minLength": 1},
        **_sizes({"min": "minSize", "max": "maxSize", "desired": "desiredSize"}),
        "wait": {**WAIT_PROP, "description": "wait until the update is done and the node "
                                             "group ACTIVE (default true)"},
        "timeout": {**DURATION_PROP, "description": "how long to wait (default 20m)"},
    }, ["cluster", "nodegroup"], anyOf=[{"required": ["min"]}, {"required": ["max"]},
                                        {"required": ["desired"]}])

    @classmethod
    def literal_arg_errors(cls, args: Any):
        return literal_bounds(args, lowest_max=1)

    def touches(self, args: dict, ctx: Context) -> set[str]:
        return service_touched(ctx, "eks")

    def plan(self, args: dict, ctx: Context) -> str:
        group = describe_nodegroup(ctx, args["cluster"], args["nodegroup"], args.get("region"))
        current = _nodegroup_capacity(group)
        wanted = merged(current, args)
        label = f"{args['cluster']}/{args['nodegroup']}"
        if wanted == current:
            return f"no change: {label} already {current.text()}"
        refusal = _eks_refusal(group, wanted)
        if refusal:
            return f"refused: {label} {wanted.text(current)}: {refusal}"
        return f"scale {label}: {wanted.text(current)}"

    def run(self, args: dict, ctx: Context) -> Result:
        region, label = args.get("region"), f"{args['cluster']}/{args['nodegroup']}"
        group = describe_nodegroup(ctx, args["cluster"], args["nodegroup"], region)
        current = _nodegroup_capacity(group)
        wanted = merged(current, args)
        data = {"previous": _previous(args, current, ("cluster", "nodegroup")),
                "min": wanted.min, "max": wanted.max, "desired": wanted.desired}
        if wanted == current:
            return Result(ok=True, changed=False, data=data,
                          message=f"no change: {label} already {current.text()}")
        refusal = _eks_refusal(group, wanted)
        if refusal:
            raise ActionError(f"eks UpdateNodegroupConfig refused for {label}: {refusal}")
        update = call(ctx, "eks", "UpdateNodegroupConfig", {
            "clusterName": args["cluster"], "nodegroupName": args["nodegroup"],
            "scalingConfig": {"minSize": wanted.min, "maxSize": wanted.max,
                              "desiredSize": wanted.desired}}, region=region)["update"]
        data["update_id"] = update.get("id")
        if args.get("wait", True):
            data["status"] = _wait_nodegroup(ctx, args, update.get("id"), wanted)
        return Result(ok=True, changed=True, data=data,
                      message=f"scaled {label}: {wanted.text(current)}")


def _wait_nodegroup(ctx: Context, args: dict, update_id: str | None, wanted: Capacity) -> str:
    """Until the update is Successful; where the service cannot describe updates (moto),
    until the node group is ACTIVE with the new sizes."""
    region = args.get("region")
    can_describe = [bool(update_id)]

    def probe() -> tuple[bool, str]:
        if can_describe[0]:
            status = _update_status(ctx, args, update_id, region)
            if status is not None:
                return status == "Successful", f"update {status}"
            can_describe[0] = False
        group = describe_nodegroup(ctx, args["cluster"], args["nodegroup"], region)
        sizes = _nodegroup_capacity(group)
        return (group.get("status") == "ACTIVE" and sizes == wanted,
                f"{group.get('status')}, {sizes.text()}")

    return poll(ctx, probe, timeout=seconds(args.get("timeout"), 1200), delay=10,
                what=f"eks node group {args['cluster']}/{args['nodegroup']}")


def _update_status(ctx: Context, args: dict, update_id: str, region: str | None) -> str | None:
    try:
        update = call(ctx, "eks", "DescribeUpdate", {"name": args["cluster"], "updateId": update_id,
                                                     "nodegroupName": args["nodegroup"]},
                      region=region)["update"]
    except AwsApiError as exc:
        if exc.code in ("ResourceNotFoundException", "404", "NotFoundException"):
            return None
        raise
    if update.get("status") in ("Failed", "Cancelled"):
        errors = "; ".join(e.get("errorMessage", "") for e in update.get("errors", []))
        raise ActionError(f"eks update {update_id} {update['status']}: {errors or 'no details'}")
    return update.get("status")


def _previous(args: dict, current: Capacity, keys: tuple[str, ...]) -> dict:
    back = {key: args[key] for key in keys}
    back.update(min=current.min, max=current.max, desired=current.desired)
    if args.get("region"):
        back["region"] = args["region"]
    return back


# --------------------------------------------------------------------------
# EC2 Auto Scaling groups
# --------------------------------------------------------------------------

def describe_group(ctx: Context, group: str, region: str | None) -> dict:
    found = call(ctx, "autoscaling", "DescribeAutoScalingGroups",
                 {"AutoScalingGroupNames": [group]}, region=region)["AutoScalingGroups"]
    if not found:
        raise ActionError(f"autoscaling DescribeAutoScalingGroups: no Auto Scaling group '{group}' "
                          f"in {region or 'the target region'}")
    return found[0]


def _group_capacity(group: dict) -> Capacity:
    return Capacity(group.get("MinSize", 0), group.get("MaxSize", 0), group.get("DesiredCapacity", 0))


def asg_update_problem(ctx: Context, params: dict, region: str | None) -> str | None:
    """The engine's check of a raw ``UpdateAutoScalingGroup``/``SetDesiredCapacity``."""
    group = describe_group(ctx, str(params.get("AutoScalingGroupName", "")), region)
    wanted = {key: params[field] for key, field in (("min", "MinSize"), ("max", "MaxSize"),
                                                    ("desired", "DesiredCapacity"))
              if field in params}
    problem = merged(_group_capacity(group), wanted).problem()
    return f"{problem} (AWS refuses it: ValidationError)" if problem else None


class SetCapacity(Action):
    """Set an Auto Scaling group's desired capacity (and optionally min/max), within bounds."""

    name = "aws.asg_set_capacity"
    mutates = True
    args_schema = schema({
        "group": {"type": "string", "minLength": 1, "description": "Auto Scaling group name"},
        **_sizes({"desired": "DesiredCapacity", "min": "MinSize", "max": "MaxSize"}),
        "wait": {**WAIT_PROP, "description": "wait until exactly `desired` instances are "
                                             "InService and Healthy (default true)"},
        "timeout": {**DURATION_PROP, "description": "how long to wait (default 15m)"},
    }, ["group", "desired"])

    @classmethod
    def literal_arg_errors(cls, args: Any):
        return literal_bounds(args)

    def touches(self, args: dict, ctx: Context) -> set[str]:
        return service_touched(ctx, "autoscaling")

    def plan(self, args: dict, ctx: Context) -> str:
        current = _group_capacity(describe_group(ctx, args["group"], args.get("region")))
        wanted = merged(current, args)
        if wanted == current:
            return f"no change: {args['group']} already {_asg_text(current)}"
        problem = wanted.problem()
        if problem:
            return f"refused: {args['group']} {_asg_text(wanted, current)}: {problem}"
        return f"scale {args['group']}: {_asg_text(wanted, current)}"

    def run(self, args: dict, ctx: Context) -> Result:
        region = args.get("region")
        current = _group_capacity(describe_group(ctx, args["group"], region))
        wanted = merged(current, args)
        data = {"previous": _previous(args, current, ("group",)),
                "min": wanted.min, "max": wanted.max, "desired": wanted.desired}
        if wanted == current:
            return Result(ok=True, changed=False, data=data,
                          message=f"no change: {args['group']} already {_asg_text(current)}")
        problem = wanted.problem()
        if problem:
            raise ActionError(f"autoscaling UpdateAutoScalingGroup refused for {args['group']}: "
                              f"{problem} (AWS refuses it: ValidationError)")
        params = {"AutoScalingGroupName": args["group"], "MinSize": wanted.min,
                  "MaxSize": wanted.max, "DesiredCapacity": wanted.desired}
        call(ctx, "autoscaling", "UpdateAutoScalingGroup", params, region=region)
        if args.get("wait", True):
            data["in_service"] = _wait_group(ctx, args, wanted.desired)
        return Result(ok=True, changed=True, data=data,
                      message=f"scaled {args['group']}: {_asg_text(wanted, current)}")


def _asg_text(wanted: Capacity, current: Capacity | None = None) -> str:
    current = current or wanted
    return (f"desired {arrow(current.desired, wanted.desired)}, min {arrow(current.min, wanted.min)}, "
            f"max {arrow(current.max, wanted.max)}")


def _wait_group(ctx: Context, args: dict, desired: int) -> int:
    counted = [0]

    def probe() -> tuple[bool, str]:
        group = describe_group(ctx, args["group"], args.get("region"))
        instances = group.get("Instances", [])
        ready = [i for i in instances if i.get("LifecycleState") == "InService"
                 and i.get("HealthStatus") == "Healthy"]
        counted[0] = len(ready)
        return (len(ready) == desired == len(instances),
                f"{len(ready)} of {desired} InService and Healthy, {len(instances)} instances")

    poll(ctx, probe, timeout=seconds(args.get("timeout"), 900), delay=10,
         what=f"autoscaling group {args['group']}")
    return counted[0]
