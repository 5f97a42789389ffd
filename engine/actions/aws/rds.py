"""``aws.rds_promote_replica``: promote an RDS read replica to a standalone primary.

A DB instance that is not a read replica is refused explicitly (amazon.aws's
``rds_instance`` silently does nothing; moto promotes anything), and so is a replica
that is not ``available`` (AWS answers InvalidDBInstanceState)."""
from __future__ import annotations

from typing import Any

from engine.actions.aws.common import (poll, schema, seconds, service_touched, DURATION_PROP,
                                       WAIT_PROP)
from engine.actions.base import Action, ActionError, Context, Result
from engine.connections.aws import call

FAILED_STATES = {"failed", "incompatible-parameters", "incompatible-restore", "storage-full",
                 "inaccessible-encryption-credentials", "deleting"}


def describe_instance(ctx: Context, instance: str, region: str | None) -> dict:
    found = call(ctx, "rds", "DescribeDBInstances", {"DBInstanceIdentifier": instance},
                 region=region)
    return found["DBInstances"][0]


def source_name(instance: dict) -> str | None:
    """The replica's source (its identifier, also for a cross-region ARN), or None."""
    source = instance.get("ReadReplicaSourceDBInstanceIdentifier")
    return source.split(":")[-1] if source else None


def promote_problem(ctx: Context, params: dict, region: str | None) -> str | None:
    """Why AWS would refuse to promote ``params['DBInstanceIdentifier']``, or None."""
    instance = describe_instance(ctx, str(params.get("DBInstanceIdentifier", "")), region)
    return _refusal(instance)


def _refusal(instance: dict) -> str | None:
    name, status = instance["DBInstanceIdentifier"], instance.get("DBInstanceStatus")
    if source_name(instance) is None:
        return (f"{name} is not a read replica: nothing to promote (refused; AWS answers "
                f"InvalidDBInstanceState)")
    if status != "available":
        return f"{name} is '{status}', not 'available': AWS refuses to promote it now"
    return None


class PromoteReplica(Action):
    """Promote an RDS read replica (e.g. the DR region's) to a standalone primary."""

    name = "aws.rds_promote_replica"
    mutates = True
    args_schema = schema({
        "instance": {"type": "string", "minLength": 1, "description": "DB instance identifier"},
        "wait": {**WAIT_PROP, "description": "wait until it is available and no longer a "
                                             "replica (default true)"},
        "timeout": {**DURATION_PROP, "description": "how long to wait (default 30m)"},
        "backup_retention_period": {"type": "integer", "minimum": 0, "maximum": 35,
                                    "description": "days of automated backups for the new primary"},
    }, ["instance"])

    def touches(self, args: dict, ctx: Context) -> set[str]:
        return service_touched(ctx, "rds")

    def plan(self, args: dict, ctx: Context) -> str:
        instance = describe_instance(ctx, args["instance"], args.get("region"))
        refusal = _refusal(instance)
        if refusal:
            return f"refused: {refusal}"
        return f"promote {args['instance']} (replica of {source_name(instance)})"

    def run(self, args: dict, ctx: Context) -> Result:
        region = args.get("region")
        before = describe_instance(ctx, args["instance"], region)
        refusal = _refusal(before)
        if refusal:
            raise ActionError(f"rds PromoteReadReplica refused: {refusal}")
        params: dict[str, Any] = {"DBInstanceIdentifier": args["instance"]}
        if "backup_retention_period" in args:
            params["BackupRetentionPeriod"] = args["backup_retention_period"]
        after = call(ctx, "rds", "PromoteReadReplica", params, region=region)["DBInstance"]
        if args.get("wait", True):
            after = _wait_promoted(ctx, args)
        data = {"instance": args["instance"], "previous_source": source_name(before),
                "status": after.get("DBInstanceStatus"), "arn": after.get("DBInstanceArn"),
                "endpoint": (after.get("Endpoint") or {}).get("Address"),
                "port": (after.get("Endpoint") or {}).get("Port")}
        how = "now a standalone primary" if args.get("wait", True) else "promotion started"
        return Result(ok=True, changed=True, data=data,
                      message=f"{args['instance']} promoted (was a replica of "
                              f"{source_name(before)}): {how}")


def _wait_promoted(ctx: Context, args: dict) -> dict:
    latest: dict = {}

    def probe() -> tuple[bool, str]:
        latest.update(describe_instance(ctx, args["instance"], args.get("region")))
        status = latest.get("DBInstanceStatus")
        if status in FAILED_STATES:
            raise ActionError(f"rds: {args['instance']} went '{status}' while being promoted")
        replica = source_name(latest)
        state = f"status {status}" + (f", still a replica of {replica}" if replica else "")
        return status == "available" and replica is None, state

    poll(ctx, probe, timeout=seconds(args.get("timeout"), 1800), delay=10,
         what=f"rds promotion of {args['instance']}")
    return latest
