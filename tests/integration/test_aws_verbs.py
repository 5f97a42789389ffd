"""The aws verbs end to end against a moto server seeded like the lab: the seeds'
region failover, rollbacks (UPSERT back to ``previous``, scale back), and the
engine's own refusals where moto is more lenient than AWS.

Every assertion about what changed reads the moto server directly with boto3 (the
oracle), never the engine's own report.
"""
from __future__ import annotations

import gzip

from helpers.run import run_inprocess

DNS_PRIMARY = "api-primary.us-west-2.elb.amazonaws.com"
DNS_DR = "api-dr.us-east-1.elb.amazonaws.com"

FAILOVER = """
name: Region failover to DR
on_failure: rollback
steps:
  - id: nodes
    name: Activate the DR node group
    target: aws_dr
    aws.eks_scale_nodegroup: {cluster: itdo-erp-dr, nodegroup: production-nodes,
                              min: 2, max: 10, desired: 4}
    register: nodes
  - id: promoted
    name: Promote the DR database
    target: aws_dr
    aws.rds_promote_replica: {instance: itdo-erp-dr}
    register: promoted
  - id: dns
    name: Move DNS to DR
    target: aws_primary
    aws.route53_upsert: {zone: itdo-erp.com, name: api.itdo-erp.com, type: CNAME, ttl: 60,
                         values: ["%(dr)s"]}
    register: dns
  - id: backups
    name: Newest backup
    target: aws_primary
    aws.s3_list: {bucket: itdo-erp-backups, prefix: database/, latest: true}
    register: backups
  - id: copied
    name: Copy it to the DR region
    target: aws_dr
    aws.s3_copy: {source: "{{ backups.latest.uri }}", destination: "s3://itdo-erp-backups-dr/database/"}
    register: copied
""" % {"dr": DNS_DR}


def _record(server, zone_id: str, name: str = "api.itdo-erp.com.", rtype: str = "CNAME"):
    records = server.client("route53").list_resource_record_sets(HostedZoneId=zone_id)
    found = [r for r in records["ResourceRecordSets"] if r["Name"] == name and r["Type"] == rtype]
    return found[0] if found else None


def _scaling(server) -> dict:
    group = server.client("eks").describe_nodegroup(clusterName="itdo-erp-dr",
                                                    nodegroupName="production-nodes")
    return group["nodegroup"]["scalingConfig"]


def _db(server, name: str, region: str) -> dict:
    found = server.client("rds", region).describe_db_instances(DBInstanceIdentifier=name)
    instance = found["DBInstances"][0]
    instance.pop("LatestRestorableTime", None)  # moves with the clock
    return instance


def test_region_failover_moves_dns_promotes_scales_and_copies_the_newest_backup(aws_world, tmp_path):
    server, zone = aws_world["server"], aws_world["world"]["zone_id"]
    ran = run_inprocess(tmp_path, FAILOVER, inventories=[aws_world["inventory"]])
    assert ran.status == "completed", [e.data.get("message") for e in ran.events]

    assert _scaling(server) == {"minSize": 2, "maxSize": 10, "desiredSize": 4}
    dr = _db(server, "itdo-erp-dr", "us-east-1")
    assert dr["DBInstanceStatus"] == "available" and "ReadReplicaSourceDBInstanceIdentifier" not in dr
    assert _record(server, zone)["ResourceRecords"] == [{"Value": DNS_DR}]
    newest = "database/db_backup_20261130_020000.sql.gz"
    body = server.client("s3").get_object(Bucket="itdo-erp-backups-dr", Key=newest)["Body"].read()
    assert b"db_backup_20261130_020000" in gzip.decompress(body)

    assert ran.value("dns")["previous"] == {"zone": zone, "name": "api.itdo-erp.com", "type": "CNAME",
                                            "ttl": 60, "values": [DNS_PRIMARY]}
    assert ran.value("nodes")["previous"] == {"cluster": "itdo-erp-dr", "nodegroup": "production-nodes",
                                              "min": 0, "max": 10, "desired": 0}
    assert ran.value("promoted")["previous_source"] == "itdo-erp-primary"
    assert ran.value("backups")["latest"]["key"] == newest
    assert ran.value("copied")["destination"] == f"s3://itdo-erp-backups-dr/{newest}"


def test_the_failover_run_twice_changes_nothing_the_second_time_but_refuses_the_promotion(
        aws_world, tmp_path):
    inventory = [aws_world["inventory"]]
    assert run_inprocess(tmp_path, FAILOVER, inventories=inventory).status == "completed"
    again = run_inprocess(tmp_path, FAILOVER, inventories=inventory)
    assert again.value("nodes")["changed"] is False
    assert again.end("promoted").type == "step.failed"
    assert "itdo-erp-dr is not a read replica" in again.end("promoted").data["message"]


ROLLBACK_DNS = """
name: DNS moves back when a later step fails
on_failure: rollback
steps:
  - name: Move DNS to DR
    target: aws_primary
    aws.route53_upsert: {zone: itdo-erp.com, name: api.itdo-erp.com, type: CNAME, ttl: 30,
                         values: ["%(dr)s"]}
    rollback:
      - aws.route53_upsert: "{{ result.previous }}"
  - name: A new record
    target: aws_primary
    aws.route53_upsert: {zone: itdo-erp.com, name: status.itdo-erp.com, type: A, ttl: 60,
                         values: [192.0.2.10]}
    rollback:
      - aws.route53_upsert: "{{ result.previous }}"
  - name: Verify the DR application
    fail: {message: DR health check failed}
""" % {"dr": DNS_DR}


def test_route53_rollback_upserts_the_previous_record_and_deletes_a_created_one(aws_world, tmp_path):
    server, zone = aws_world["server"], aws_world["world"]["zone_id"]
    ran = run_inprocess(tmp_path, ROLLBACK_DNS, inventories=[aws_world["inventory"]])

    assert ran.status == "failed"
    assert "rollback.completed" in ran.types
    restored = _record(server, zone)
    assert restored["ResourceRecords"] == [{"Value": DNS_PRIMARY}] and restored["TTL"] == 60
    assert _record(server, zone, "status.itdo-erp.com.", "A") is None


ROLLBACK_SCALE = """
name: Capacity goes back when a later step fails
on_failure: rollback
steps:
  - name: Wake the DR node group
    target: aws_dr
    aws.eks_scale_nodegroup: {cluster: itdo-erp-dr, nodegroup: production-nodes, min: 2, desired: 4}
    rollback:
      - aws.eks_scale_nodegroup: "{{ result.previous }}"
  - name: Wake the DR workers
    target: aws_dr
    aws.asg_set_capacity: {group: itdo-erp-dr-workers, desired: 3, min: 1}
    rollback:
      - aws.asg_set_capacity: "{{ result.previous }}"
  - name: Verify the DR application
    fail: {message: DR health check failed}
"""


def test_eks_and_asg_rollbacks_scale_back_to_the_previous_sizes(aws_world, tmp_path):
    server = aws_world["server"]
    ran = run_inprocess(tmp_path, ROLLBACK_SCALE, inventories=[aws_world["inventory"]])

    assert ran.status == "failed" and "rollback.completed" in ran.types
    assert _scaling(server) == {"minSize": 0, "maxSize": 10, "desiredSize": 0}
    group = server.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=["itdo-erp-dr-workers"])["AutoScalingGroups"][0]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 10, 0)
    rolled = [e for e in ran.events if e.type == "step.succeeded" and "rollback" in e.step["id"]]
    assert len(rolled) == 2, [e.step for e in rolled]


def test_promoting_a_database_that_is_no_replica_is_refused_though_moto_would_do_it(aws_world, tmp_path):
    server = aws_world["server"]
    before = _db(server, "itdo-erp-primary", "us-west-2")
    runbook = """
name: promote the wrong one
steps:
  - id: promote
    target: aws_primary
    aws.rds_promote_replica: {instance: itdo-erp-primary}
"""
    rehearsal = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]], dry_run=True)
    assert rehearsal.end("promote").data["plan"].startswith(
        "refused: itdo-erp-primary is not a read replica")
    ran = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]])
    assert ran.status == "failed"
    assert ran.end("promote").data["message"] == (
        "rds PromoteReadReplica refused: itdo-erp-primary is not a read replica: nothing to "
        "promote (refused; AWS answers InvalidDBInstanceState)")
    assert _db(server, "itdo-erp-primary", "us-west-2") == before


def test_sizes_outside_the_bounds_are_refused_by_the_engine_though_moto_accepts_them(
        aws_world, tmp_path):
    server = aws_world["server"]
    runbook = """
name: out of bounds
steps:
  - id: too-many-nodes
    target: aws_dr
    aws.eks_scale_nodegroup: {cluster: itdo-erp-dr, nodegroup: production-nodes, desired: 12}
    ignore_errors: true
  - id: too-few-workers
    target: aws_dr
    aws.asg_set_capacity: {group: itdo-erp-dr-workers, desired: 0, min: "{{ 3 }}"}
    ignore_errors: true
"""
    rehearsal = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]], dry_run=True)
    assert rehearsal.end("too-many-nodes").data["plan"] == (
        "refused: itdo-erp-dr/production-nodes min 0, max 10, desired 0→12: desired 12 is "
        "outside min 0 .. max 10 (AWS refuses it: InvalidParameterException)")
    assert rehearsal.end("too-few-workers").data["plan"] == (
        "refused: itdo-erp-dr-workers desired 0, min 0→3, max 10: desired 0 is outside min 3 .. max 10")

    ran = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]])
    assert "desired 12 is outside min 0 .. max 10" in ran.end("too-many-nodes").data["message"]
    assert "desired 0 is outside min 3 .. max 10" in ran.end("too-few-workers").data["message"]
    assert _scaling(server) == {"minSize": 0, "maxSize": 10, "desiredSize": 0}
    group = server.client("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=["itdo-erp-dr-workers"])["AutoScalingGroups"][0]
    assert group["MinSize"] == 0


def test_s3_copy_uploads_downloads_and_copies_multipart_across_regions_once(aws_world, tmp_path):
    server = aws_world["server"]
    big = tmp_path / "big.dump"
    big.write_bytes(bytes(range(256)) * (12 * 4096 + 7))  # 12 MiB + a bit: 3 parts of 5 MiB
    runbook = f"""
name: copies
steps:
  - id: upload
    target: aws_primary
    aws.s3_copy: {{source: "{big}", destination: "s3://itdo-erp-backups/full/", part_size: 5242880}}
    register: up
  - id: cross-region
    target: aws_dr
    aws.s3_copy: {{source: "s3://itdo-erp-backups/full/big.dump",
                  destination: "s3://itdo-erp-backups-dr/full/big.dump", part_size: 5242880}}
    register: across
  - id: download
    target: aws_dr
    aws.s3_copy: {{source: "s3://itdo-erp-backups-dr/full/big.dump", destination: "{tmp_path}/restore/",
                  part_size: 5242880}}
    register: down
"""
    first = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]])
    assert first.status == "completed", [e.data.get("message") for e in first.events]
    assert [first.value(s)["changed"] for s in ("upload", "cross-region", "download")] == [True] * 3
    head = server.client("s3", "us-east-1").head_object(Bucket="itdo-erp-backups-dr", Key="full/big.dump")
    assert head["ETag"].strip('"').endswith("-3") and head["ContentLength"] == big.stat().st_size
    assert first.value("upload")["etag"] == first.value("cross-region")["etag"] == head["ETag"].strip('"')
    assert (tmp_path / "restore" / "big.dump").read_bytes() == big.read_bytes()

    rehearsal = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]], dry_run=True)
    assert [rehearsal.end(s).data["plan"].split(" (")[0] for s in ("upload", "cross-region", "download")] \
        == ["no change: same ETag"] * 3
    second = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]])
    assert [second.value(s)["changed"] for s in ("upload", "cross-region", "download")] == [False] * 3


def test_s3_list_filters_by_suffix_and_a_missing_latest_is_a_clear_failure(aws_world, tmp_path):
    runbook = """
name: lists
steps:
  - id: dumps
    target: aws_primary
    aws.s3_list: {bucket: itdo-erp-backups, prefix: database/, suffix: .sql.gz, limit: 2}
    register: dumps
  - id: none-yet
    target: aws_dr
    aws.s3_list: {bucket: itdo-erp-backups-dr, prefix: database/, latest: true}
"""
    ran = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]])
    dumps = ran.value("dumps")
    assert dumps["count"] == 3 and len(dumps["objects"]) == 2 and dumps["truncated"] is True
    assert dumps["latest"]["key"] == "database/db_backup_20261130_020000.sql.gz"
    assert ran.end("none-yet").data["message"] == (
        "no objects under s3://itdo-erp-backups-dr/database/: nothing is the latest")


def test_aws_wait_polls_until_a_jmespath_condition_holds_and_times_out_clearly(aws_world, tmp_path):
    runbook = """
name: waits
steps:
  - id: ready
    target: aws_dr
    aws.wait: {service: rds, operation: DescribeDBInstances,
               params: {DBInstanceIdentifier: itdo-erp-dr},
               until: "DBInstances[0].DBInstanceStatus == 'available'"}
    register: ready
  - id: never
    target: aws_dr
    aws.wait: {service: eks, operation: DescribeNodegroup,
               params: {clusterName: itdo-erp-dr, nodegroupName: production-nodes},
               until: "nodegroup.scalingConfig.desiredSize == `4`", timeout: 1, delay: 0.2}
"""
    ran = run_inprocess(tmp_path, runbook, inventories=[aws_world["inventory"]])
    assert ran.value("ready")["selected"] is True
    message = ran.end("never").data["message"]
    assert message.startswith("eks DescribeNodegroup until nodegroup.scalingConfig.desiredSize == `4`: "
                              "not done after 1 s (last seen: "), message
