"""Rehearsing AWS steps: a dry-run changes nothing on the server (the whole moto
state is compared before and after), plans every mutating step the real run
executes, runs read-only calls as probes, and says what AWS itself would refuse.
"""
from __future__ import annotations

import time

import pytest
from helpers.run import run_inprocess

from engine.actions.aws.model import is_read_only

EVERY_VERB = """
name: Every aws verb
steps:
  - id: describe
    target: aws_dr
    aws.call: {service: rds, operation: describe_db_instances,
               select: "DBInstances[0].ReadReplicaSourceDBInstanceIdentifier"}
    register: replica
  - id: dns
    target: aws_primary
    aws.route53_upsert: {zone: itdo-erp.com, name: api.itdo-erp.com, type: CNAME, ttl: 60,
                         values: [api-dr.us-east-1.elb.amazonaws.com]}
  - id: raw-dns
    target: aws_primary
    aws.call:
      service: route53
      operation: ChangeResourceRecordSets
      params:
        HostedZoneId: "{{ aws_zone_id }}"
        ChangeBatch:
          Changes:
            - Action: UPSERT
              ResourceRecordSet: {Name: status.itdo-erp.com, Type: A, TTL: 60,
                                  ResourceRecords: [{Value: 192.0.2.10}]}
  - id: promote
    target: aws_dr
    aws.rds_promote_replica: {instance: itdo-erp-dr}
  - id: nodes
    target: aws_dr
    aws.eks_scale_nodegroup: {cluster: itdo-erp-dr, nodegroup: production-nodes,
                              min: 2, max: 10, desired: 4}
  - id: workers
    target: aws_dr
    aws.asg_set_capacity: {group: itdo-erp-dr-workers, desired: 2, min: 1}
  - id: backups
    target: aws_primary
    aws.s3_list: {bucket: itdo-erp-backups, prefix: database/, latest: true}
    register: backups
  - id: copy
    target: aws_dr
    aws.s3_copy: {source: "{{ backups.latest.uri }}", destination: "s3://itdo-erp-backups-dr/database/"}
  - id: download
    target: aws_dr
    aws.s3_copy: {source: "{{ backups.latest.uri }}", destination: "{{ workdir }}/"}
  - id: launch
    target: aws_dr
    aws.call: {service: ec2, operation: RunInstances,
               params: {ImageId: ami-12c6146b, MinCount: 1, MaxCount: 1, InstanceType: t3.micro}}
  - id: active
    target: aws_dr
    aws.wait: {service: eks, waiter: nodegroup_active,
               params: {clusterName: itdo-erp-dr, nodegroupName: production-nodes}}
"""
MUTATING = ["dns", "raw-dns", "promote", "nodes", "workers", "copy", "download", "launch"]
READ_ONLY = ["describe", "backups", "active"]


def test_a_dry_run_of_every_verb_leaves_the_server_unchanged_and_plans_each_change(
        aws_world, aws_snapshot, tmp_path):
    workdir = tmp_path / "work"
    extra = [f'{{"workdir": "{workdir}"}}']
    before = aws_snapshot()
    rehearsal = run_inprocess(tmp_path, EVERY_VERB, inventories=[aws_world["inventory"]],
                              extra=extra, dry_run=True)
    assert aws_snapshot() == before
    assert not workdir.exists()

    assert rehearsal.status == "completed"
    assert [s for s in MUTATING if rehearsal.end(s).type == "step.planned"] == MUTATING
    # probes of what nothing changes run; a wait on the node group a planned step scales
    # is planned: it would only see the state before the change (the rehearsal contract)
    assert [s for s in READ_ONLY if rehearsal.end(s).type == "step.succeeded"] == [
        "describe", "backups"]
    active = rehearsal.end("active")
    assert active.type == "step.planned" and not active.data["mutates"]
    assert active.data["plan"].startswith("would check after 'nodes'")
    plans = {s: rehearsal.end(s).data["plan"] for s in MUTATING}
    assert plans["dns"] == ("api.itdo-erp.com CNAME api-primary.us-west-2.elb.amazonaws.com → "
                            "api-dr.us-east-1.elb.amazonaws.com (TTL 60)")
    assert plans["raw-dns"].startswith("call route53 ChangeResourceRecordSets {")
    assert plans["raw-dns"].endswith("(parameters valid per the botocore model)")
    assert plans["promote"] == "promote itdo-erp-dr (replica of itdo-erp-primary)"
    assert plans["nodes"] == "scale itdo-erp-dr/production-nodes: min 0→2, max 10, desired 0→4"
    assert plans["workers"] == "scale itdo-erp-dr-workers: desired 0→2, min 0→1, max 10"
    assert plans["copy"] == ("copy s3://itdo-erp-backups/database/db_backup_20261130_020000.sql.gz → "
                             "s3://itdo-erp-backups-dr/database/db_backup_20261130_020000.sql.gz (86 B)")
    assert plans["download"].startswith("download s3://itdo-erp-backups/database/db_backup_20261130")
    assert plans["launch"].endswith("(parameters valid per the botocore model; EC2 DryRun: would succeed)")

    real = run_inprocess(tmp_path, EVERY_VERB, inventories=[aws_world["inventory"]], extra=extra)
    assert real.status == "completed", [e.data.get("message") for e in real.events]
    changed = [s for s in MUTATING + READ_ONLY if real.value(s)["changed"]]
    assert changed == MUTATING  # exactly the steps the rehearsal planned
    assert aws_snapshot() != before


def test_a_read_only_call_runs_in_a_dry_run_and_the_steps_mutates_overrides_the_rule(
        aws_world, aws_snapshot, tmp_path):
    runbook = """
name: overrides
steps:
  - id: plain-describe
    target: aws_dr
    aws.call: {service: eks, operation: DescribeNodegroup,
               params: {clusterName: itdo-erp-dr, nodegroupName: production-nodes},
               select: nodegroup.scalingConfig}
  - id: declared-mutating
    target: aws_dr
    mutates: true
    aws.call: {service: eks, operation: ListClusters}
  - id: declared-read-only
    target: aws_dr
    mutates: false
    aws.call: {service: rds, operation: AddTagsToResource,
               params: {ResourceName: "arn:aws:rds:us-east-1:123456789012:db:itdo-erp-dr",
                        Tags: [{Key: drill, Value: "yes"}]}}
"""
    ran = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]], dry_run=True)
    assert ran.end("plain-describe").type == "step.succeeded"
    assert ran.value("plain-describe")["selected"] == {"minSize": 0, "maxSize": 10, "desiredSize": 0}
    assert ran.end("declared-mutating").type == "step.planned"
    assert ran.end("declared-mutating").data["plan"] == "call eks ListClusters (read-only)"
    assert ran.end("declared-read-only").type == "step.succeeded"  # the author said so
    tags = aws_world["server"].client("rds").list_tags_for_resource(
        ResourceName="arn:aws:rds:us-east-1:123456789012:db:itdo-erp-dr")["TagList"]
    assert {"Key": "drill", "Value": "yes"} in tags


@pytest.mark.parametrize("service, operation, read_only", [
    ("rds", "DescribeDBInstances", True), ("s3", "GetObject", True), ("s3", "HeadObject", True),
    ("s3", "ListObjectsV2", True), ("dynamodb", "Query", True), ("dynamodb", "Scan", True),
    ("dynamodb", "BatchGetItem", True), ("dynamodb", "BatchWriteItem", False),
    ("logs", "FilterLogEvents", True), ("cloudtrail", "LookupEvents", True),
    ("s3", "SelectObjectContent", True), ("cloudsearchdomain", "Search", True),
    ("route53", "ChangeResourceRecordSets", False), ("rds", "PromoteReadReplica", False),
    ("ec2", "RunInstances", False), ("s3", "PutObject", False), ("eks", "UpdateNodegroupConfig", False),
    ("cognito-identity", "GetId", False), ("redshift", "GetClusterCredentials", False),
    ("iot", "GetRegistrationCode", False), ("example", "Getaway", False), ("example", "Listen", False),
])
def test_the_read_only_rule(service, operation, read_only):
    assert is_read_only(service, operation) is read_only


def test_ec2_operations_are_planned_with_the_servers_own_dry_run(aws_world, tmp_path):
    ec2 = aws_world["server"].client("ec2")
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]
    runbook = f"""
name: stop
steps:
  - id: stop
    target: aws_dr
    aws.call: {{service: ec2, operation: StopInstances, params: {{InstanceIds: [{instance['InstanceId']}]}}}}
"""
    ran = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]], dry_run=True)
    assert ran.end("stop").data["plan"] == (
        f'call ec2 StopInstances {{"InstanceIds": ["{instance["InstanceId"]}"]}} '
        f"(parameters valid per the botocore model; EC2 DryRun: would succeed)")
    state = ec2.describe_instances(InstanceIds=[instance["InstanceId"]])
    assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"


def _change(action: str, value: str, ttl: int = 60) -> str:
    return f"""
name: raw change
steps:
  - id: change
    target: aws_primary
    aws.call:
      service: route53
      operation: ChangeResourceRecordSets
      params:
        HostedZoneId: "{{{{ aws_zone_id }}}}"
        ChangeBatch:
          Changes:
            - Action: {action}
              ResourceRecordSet: {{Name: api.itdo-erp.com, Type: CNAME, TTL: {ttl},
                                  ResourceRecords: [{{Value: {value}}}]}}
"""


@pytest.mark.parametrize("action, value, ttl, refusal", [
    ("CREATE", "x.example.com", 60, "CREATE api.itdo-erp.com CNAME: the record already exists"),
    ("DELETE", "x.example.com", 60, "DELETE api.itdo-erp.com CNAME: the record differs from the live one"),
    ("DELETE", "api-primary.us-west-2.elb.amazonaws.com", 300,
     "DELETE api.itdo-erp.com CNAME: the record differs from the live one"),
])
def test_route53_batches_aws_would_reject_are_refused_though_moto_accepts_them(
        aws_world, aws_snapshot, tmp_path, action, value, ttl, refusal):
    before = aws_snapshot()
    runbook = _change(action, value, ttl)
    rehearsal = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]], dry_run=True)
    assert rehearsal.end("change").data["plan"].startswith("refused: route53 ChangeResourceRecordSets {")
    assert refusal in rehearsal.end("change").data["plan"]
    ran = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]])
    assert ran.status == "failed"
    assert ran.end("change").data["message"].startswith(
        "route53 ChangeResourceRecordSets refused: " + refusal)
    assert aws_snapshot() == before


def test_deleting_a_missing_record_is_refused(aws_world, aws_snapshot, tmp_path):
    runbook = _change("DELETE", "x.example.com").replace("api.itdo-erp.com", "gone.itdo-erp.com")
    ran = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]])
    assert ran.end("change").data["message"] == (
        "route53 ChangeResourceRecordSets refused: DELETE gone.itdo-erp.com CNAME: no such record; "
        "AWS rejects the batch with InvalidChangeBatch")


def test_a_templated_parameter_of_the_wrong_type_is_refused_before_the_call(aws_world, tmp_path):
    runbook = _change("UPSERT", "x.example.com").replace("TTL: 60", 'TTL: "{{ ttl }}"')
    extra = ['{"ttl": "sixty"}']
    rehearsal = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]], extra=extra,
                              dry_run=True)
    assert rehearsal.end("change").data["plan"].endswith(
        "params.ChangeBatch.Changes[0].ResourceRecordSet.TTL: expected integer, got string 'sixty'")
    ran = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]], extra=extra)
    assert ran.end("change").data["message"] == (
        "route53 ChangeResourceRecordSets: invalid parameters: "
        "params.ChangeBatch.Changes[0].ResourceRecordSet.TTL: expected integer, got string 'sixty'")


def test_a_wait_after_a_planned_change_is_planned_and_forced_to_run_it_looks_once(
        aws_world, tmp_path):
    runbook = """
name: wait after a planned scale
steps:
  - id: nodes
    target: aws_dr
    aws.eks_scale_nodegroup: {cluster: itdo-erp-dr, nodegroup: production-nodes, min: 2, desired: 4}
  - id: four-nodes
    target: aws_dr
    aws.wait: {service: eks, operation: DescribeNodegroup,
               params: {clusterName: itdo-erp-dr, nodegroupName: production-nodes},
               until: "nodegroup.scalingConfig.desiredSize == `4`", timeout: 10m}
"""
    started = time.monotonic()
    ran = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]], dry_run=True)
    assert time.monotonic() - started < 30
    end = ran.end("four-nodes")
    # the wait reads what the planned scale changes: planned, not judged on the old state
    assert end.type == "step.planned" and "finding" not in end.data
    assert end.data["plan"].startswith("would check after 'nodes'")
    assert ran.handle.outcome.findings == []
    # rehearse: run makes it look now: once, and a finding instead of sitting out 10 minutes
    forced = runbook.replace("               until:", "               until:", 1).replace(
        "  - id: four-nodes\n", "  - id: four-nodes\n    rehearse: run\n")
    started = time.monotonic()
    ran = run_inprocess(tmp_path, forced, inventories=[aws_world["inventory"]], dry_run=True)
    assert time.monotonic() - started < 30
    end = ran.end("four-nodes")
    assert end.type == "step.failed" and end.data["finding"] is True
    assert "not met yet" in end.data["message"] and "waits up to 600 s" in end.data["message"]
