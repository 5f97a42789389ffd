"""Lab part ``aws``: a moto server on loopback, seeded like the seeds' two-region world.

``runbook lab up --with aws`` starts ``python -m engine.lab.aws serve`` in a session of
its own (the CLI exits; the server stays), seeds it and adds to the lab inventory:

- targets ``aws_primary`` (us-west-2) and ``aws_dr`` (us-east-1), group ``aws``, each
  with ``aws: {region, endpoint_url, access_key_id, secret_access_key}``; the fake
  credentials come from the inventory's ``secrets`` (``aws_lab_access_key_id``, and
  ``aws_lab_secret_access_key`` read from a 0600 file), so they are masked everywhere;
- vars ``aws_endpoint_url``, ``aws_zone_id``, ``aws_dns_primary``, ``aws_dns_dr``,
  ``aws_backup_bucket``, ``aws_dr_backup_bucket``.

The world (:func:`seed_world`): Route 53 zone ``itdo-erp.com`` with ``api.itdo-erp.com``
CNAME → the primary region's load balancer; RDS ``itdo-erp-primary`` (us-west-2) with
its cross-region read replica ``itdo-erp-dr`` (us-east-1); S3 ``itdo-erp-backups``
(us-west-2, three dated dumps under ``database/``) and ``itdo-erp-backups-dr``
(us-east-1); EKS cluster ``itdo-erp-dr`` with node group ``production-nodes`` at
0/10/0; and, for ``aws.asg_set_capacity``, Auto Scaling group ``itdo-erp-dr-workers``
at 0/10/0 (us-east-1).

moto is made more like AWS in one place (:func:`aws_like_moto`): a promoted replica
stops naming its source, as on AWS (moto keeps ``ReadReplicaSourceDBInstanceIdentifier``,
so nothing could ever tell that a promotion finished).
"""
from __future__ import annotations

import argparse
import gzip
import logging
import os
import secrets
import signal
import sys
import threading
import urllib.request
from functools import lru_cache
from pathlib import Path

from engine.errors import LabError
from engine.lab.parts import LabContext
from engine.lab.processes import launch_detached

PRIMARY_REGION, DR_REGION = "us-west-2", "us-east-1"
ZONE = "itdo-erp.com"
API_RECORD = "api.itdo-erp.com"
DNS_PRIMARY = "api-primary.us-west-2.elb.amazonaws.com"
DNS_DR = "api-dr.us-east-1.elb.amazonaws.com"
BACKUP_BUCKET, DR_BUCKET = "itdo-erp-backups", "itdo-erp-backups-dr"
BACKUP_KEYS = [f"database/db_backup_202611{day}_020000.sql.gz" for day in (28, 29, 30)]
CLUSTER, NODEGROUP, ASG = "itdo-erp-dr", "production-nodes", "itdo-erp-dr-workers"
ACCOUNT = "123456789012"
LAB_IMAGE = "ami-12c6146b"  # one of the images moto ships with (Amazon Linux)
STARTUP_TIMEOUT = 30.0
PIDFILE = "aws-moto.pid"
SECRET_FILE = "aws-lab-secret-access-key"


# --------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------

def aws_like_moto() -> None:
    """Make moto's PromoteReadReplica do what AWS does: the promoted instance no longer
    names a source and its source no longer lists it. Idempotent."""
    from moto.rds.models import RDSBackend

    original = RDSBackend.promote_read_replica
    if getattr(original, "aws_like", False):
        return

    def promote_read_replica(self, db_kwargs):
        database = self.databases.get(db_kwargs["db_instance_identifier"])
        source_id = database.source_db_instance_identifier if database is not None else None
        was_replica = bool(database is not None and database.is_replica)
        promoted = original(self, db_kwargs)
        if was_replica and source_id:
            _forget_replica(self, source_id, promoted)
            promoted.source_db_instance_identifier = None
        return promoted

    promote_read_replica.aws_like = True
    RDSBackend.promote_read_replica = promote_read_replica


def _forget_replica(backend, source_id: str, replica) -> None:
    try:
        source = backend.find_db_from_id(source_id)
    except Exception:  # the source is gone: nothing lists the replica any more
        return
    for name in (replica.db_instance_arn, replica.db_instance_identifier):
        if name in source.replicas:
            source.replicas.remove(name)


def serve(port: int, pidfile: Path) -> None:
    """Run a moto server on 127.0.0.1:``port`` until SIGTERM (``python -m engine.lab.aws serve``)."""
    from moto.server import ThreadedMotoServer

    aws_like_moto()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not one log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    pidfile.write_text(f"{os.getpid()}\n")
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        pidfile.unlink(missing_ok=True)


def _launch(port: int, pidfile: Path, log: Path) -> int:
    """Start the moto server in a session of its own (it outlives the CLI); its PID."""
    argv = [sys.executable, "-m", "engine.lab.aws", "serve", "--port", str(port),
            "--pidfile", str(pidfile)]
    return launch_detached(argv, log, "the moto server")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# --------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _clients(endpoint_url: str, access_key_id: str, secret_access_key: str):
    """``client(service, region)`` for the server, each client made once (seeding again
    after a reset, as the tests do, then costs no model loading)."""
    import boto3

    session = boto3.session.Session(aws_access_key_id=access_key_id,
                                    aws_secret_access_key=secret_access_key)
    return lru_cache(maxsize=None)(lambda service, region: session.client(
        service, region_name=region, endpoint_url=endpoint_url))


def seed_world(endpoint_url: str, access_key_id: str = "AKIALABEXAMPLE",
               secret_access_key: str = "lab-secret") -> dict:
    """Create the seeds' world on the moto server at ``endpoint_url``; its ids."""
    client = _clients(endpoint_url, access_key_id, secret_access_key)
    world = {"zone_id": _seed_dns(client("route53", PRIMARY_REGION))}
    _seed_databases(client("rds", PRIMARY_REGION), client("rds", DR_REGION))
    _seed_buckets(client("s3", PRIMARY_REGION), client("s3", DR_REGION))
    _seed_cluster(client("eks", DR_REGION))
    _seed_workers(client("ec2", DR_REGION), client("autoscaling", DR_REGION))
    return world


def _seed_dns(route53) -> str:
    zone = route53.create_hosted_zone(Name=ZONE, CallerReference="runbook-lab")["HostedZone"]
    zone_id = zone["Id"].split("/")[-1]
    record = {"Name": API_RECORD, "Type": "CNAME", "TTL": 60,
              "ResourceRecords": [{"Value": DNS_PRIMARY}]}
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": record}]})
    return zone_id


def _seed_databases(rds_primary, rds_dr) -> None:
    primary = rds_primary.create_db_instance(
        DBInstanceIdentifier="itdo-erp-primary", DBInstanceClass="db.r6g.large",
        Engine="postgres", MasterUsername="postgres", MasterUserPassword=secrets.token_hex(12),
        AllocatedStorage=100, BackupRetentionPeriod=7, DBName="itdo_erp")["DBInstance"]
    rds_dr.create_db_instance_read_replica(
        DBInstanceIdentifier="itdo-erp-dr", SourceDBInstanceIdentifier=primary["DBInstanceArn"],
        DBInstanceClass="db.r6g.large")


def _seed_buckets(s3_primary, s3_dr) -> None:
    s3_primary.create_bucket(Bucket=BACKUP_BUCKET,
                             CreateBucketConfiguration={"LocationConstraint": PRIMARY_REGION})
    for key in BACKUP_KEYS:  # oldest first: the last one is also the newest by LastModified
        dump = f"-- itdo_erp dump {key}\nSELECT 1;\n".encode()
        s3_primary.put_object(Bucket=BACKUP_BUCKET, Key=key, Body=gzip.compress(dump, mtime=0))
    s3_dr.create_bucket(Bucket=DR_BUCKET)


def _seed_cluster(eks) -> None:
    subnets = ["subnet-0dr0a", "subnet-0dr0b"]
    eks.create_cluster(name=CLUSTER, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks-cluster",
                       resourcesVpcConfig={"subnetIds": subnets})
    eks.create_nodegroup(clusterName=CLUSTER, nodegroupName=NODEGROUP, subnets=subnets,
                         nodeRole=f"arn:aws:iam::{ACCOUNT}:role/eks-nodes",
                         scalingConfig={"minSize": 0, "maxSize": 10, "desiredSize": 0})


def _seed_workers(ec2, autoscaling) -> None:
    ec2.create_launch_template(LaunchTemplateName=ASG, LaunchTemplateData={
        "ImageId": LAB_IMAGE, "InstanceType": "t3.medium"})
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=ASG, LaunchTemplate={"LaunchTemplateName": ASG},
        MinSize=0, MaxSize=10, DesiredCapacity=0, AvailabilityZones=[f"{DR_REGION}a"])


def lab_inventory(endpoint_url: str, world: dict, access_key_id: str,
                  secret_source: dict) -> dict:
    """Inventory entries for a seeded moto server (also used by the test fixtures)."""
    def target(region: str) -> dict:
        return {"region": region, "aws": {
            "region": region, "endpoint_url": endpoint_url,
            "access_key_id": "{{ secrets.aws_lab_access_key_id }}",
            "secret_access_key": "{{ secrets.aws_lab_secret_access_key }}"}}

    return {
        "vars": {"aws_endpoint_url": endpoint_url, "aws_zone_id": world["zone_id"],
                 "aws_dns_primary": DNS_PRIMARY, "aws_dns_dr": DNS_DR,
                 "aws_backup_bucket": BACKUP_BUCKET, "aws_dr_backup_bucket": DR_BUCKET},
        "groups": {"aws": {"targets": {"aws_primary": target(PRIMARY_REGION),
                                       "aws_dr": target(DR_REGION)}}},
        "secrets": {"aws_lab_access_key_id": {"value": access_key_id},
                    "aws_lab_secret_access_key": secret_source},
    }


# --------------------------------------------------------------------------
# The lab part interface (engine.lab.parts)
# --------------------------------------------------------------------------

def _require_moto() -> None:
    import importlib.util

    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        raise LabError("the aws lab part needs moto's server: pip install 'moto[server]'")


def up(lab: LabContext) -> dict:
    from engine.lab.sandbox import _free_ports, _pid_alive, _wait_until

    _require_moto()
    port = _free_ports(1)[0]
    pidfile, log = lab.runtime_dir / PIDFILE, lab.lab_dir / "aws-moto.log"
    state = {"port": port, "url": f"http://127.0.0.1:{port}", "pidfile": str(pidfile),
             "log": str(log)}
    state["pid"] = _launch(port, pidfile, log)
    lab.save(state)
    _wait_until(lambda: _answers(state["url"]) or not _pid_alive(state["pid"]),
                STARTUP_TIMEOUT, f"the moto server on {state['url']}")
    if not _pid_alive(state["pid"]):
        raise LabError(f"the moto server exited at start; see {log}")
    lab.progress("seeding the AWS world (Route 53, RDS, S3, EKS, Auto Scaling)")
    state.update(_credentials(lab.lab_dir))
    state["world"] = seed_world(state["url"], state["access_key_id"],
                                Path(state["secret_file"]).read_text().strip())
    lab.save(state)
    return state


def _credentials(lab_dir: Path) -> dict:
    """Fake credentials for the lab: the key id in the inventory, the secret in a 0600 file."""
    secret_file = lab_dir / SECRET_FILE
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(30) + "\n")
    return {"access_key_id": "AKIA" + secrets.token_hex(8).upper(), "secret_file": str(secret_file)}


def down(lab: LabContext, state: dict | None) -> list[str]:
    from engine.lab.sandbox import _owned_pid, _terminate

    pidfile = Path((state or {}).get("pidfile") or lab.runtime_dir / PIDFILE)
    pid = (state or {}).get("pid") or _read_pid(pidfile)
    stopped = []
    if pid and _owned_pid(pid, str(pidfile)):
        _terminate(pid)
        stopped.append("aws")
    pidfile.unlink(missing_ok=True)
    (lab.lab_dir / SECRET_FILE).unlink(missing_ok=True)
    return stopped


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def status(state: dict) -> dict[str, dict]:
    from engine.lab.sandbox import _owned_pid

    running = _owned_pid(state.get("pid"), state["pidfile"])
    answering = running and _answers(state["url"])
    detail = (f"moto at {state['url']} ({PRIMARY_REGION} primary, {DR_REGION} DR)" if answering
              else "running but not answering" if running else "")
    return {"aws": {"running": running, "pid": state.get("pid") if running else None,
                    "port": state["port"], "url": state["url"], "detail": detail}}


def inventory(state: dict) -> dict:
    return lab_inventory(state["url"], state.get("world") or {"zone_id": None},
                         state.get("access_key_id", ""), {"file": state.get("secret_file", "")})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m engine.lab.aws")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="run the lab's moto server until SIGTERM")
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--pidfile", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.port, args.pidfile)


if __name__ == "__main__":
    main()
