"""A moto server for the aws family's tests, seeded like the lab's world.

Loaded for every test as a pytest plugin (``tests/conftest.py``).

``moto_server`` starts one moto server on 127.0.0.1 per session (the lab's own,
with its AWS-like promote: ``engine.lab.aws``) and, for the session, takes
every ``AWS_*`` variable and the user's ``~/.aws`` files out of the environment so a
developer's real credentials or profile can never be used. ``aws_world`` resets the
server (``POST /moto-api/reset``), seeds the world again and writes an inventory with
the lab's targets ``aws_primary`` / ``aws_dr``; ``service_aws`` is the same for the
action data cases (``service: aws``).
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

import pytest
import yaml
from helpers.run import REPO

CLEARED_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
               "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
               "AWS_ENDPOINT_URL", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
               "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")


@dataclass
class MotoServer:
    url: str
    access_key_id: str = "AKIA" + secrets.token_hex(8).upper()
    secret_access_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def seed(self) -> dict:
        from engine.lab.aws import seed_world

        return seed_world(self.url, self.access_key_id, self.secret_access_key)

    def client(self, service: str, region: str = "us-east-1"):
        import boto3

        return boto3.client(service, region_name=region, endpoint_url=self.url,
                            aws_access_key_id=self.access_key_id,
                            aws_secret_access_key=self.secret_access_key)

    def snapshot(self) -> dict:
        """Everything the world holds, in both regions, as plain data (for before/after)."""
        from engine.actions.aws.model import json_safe

        state: dict = {}
        for region in ("us-west-2", "us-east-1"):
            state[region] = json_safe(self._regional(region))
        route53 = self.client("route53")
        zones = route53.list_hosted_zones()["HostedZones"]
        state["route53"] = json_safe({z["Id"]: route53.list_resource_record_sets(
            HostedZoneId=z["Id"])["ResourceRecordSets"] for z in zones})
        s3 = self.client("s3")
        state["s3"] = json_safe({b["Name"]: s3.list_objects_v2(Bucket=b["Name"]).get("Contents", [])
                                 for b in s3.list_buckets()["Buckets"]})
        return _without(state, VOLATILE)

    def _regional(self, region: str) -> dict:
        rds, eks = self.client("rds", region), self.client("eks", region)
        autoscaling, ec2 = self.client("autoscaling", region), self.client("ec2", region)
        clusters = eks.list_clusters()["clusters"]
        return {
            "rds": rds.describe_db_instances()["DBInstances"],
            "eks": {c: [eks.describe_nodegroup(clusterName=c, nodegroupName=n)["nodegroup"]
                        for n in eks.list_nodegroups(clusterName=c)["nodegroups"]] for c in clusters},
            "asg": autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"],
            "ec2": ec2.describe_instances()["Reservations"],
        }


VOLATILE = {"LatestRestorableTime"}  # moves with the clock, not with what a run did


def _without(value, keys: set):
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(v, keys) for v in value]
    return value


def _require_moto() -> None:
    import importlib.util

    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        problem = "moto's server is not installed (pip install 'moto[server]')"
        if os.environ.get("CI"):  # .ci/run installs it: missing is a failure there
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="session")
def aws_clean_env(tmp_path_factory):
    """No real AWS configuration for the whole session (subprocesses inherit it too)."""
    patch = pytest.MonkeyPatch()
    empty = tmp_path_factory.mktemp("no-aws-config")
    for name in CLEARED_ENV:
        patch.delenv(name, raising=False)
    patch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no 1-second probes of an instance role
    yield
    patch.undo()


@pytest.fixture(scope="session")
def moto_server(aws_clean_env, tmp_path_factory) -> MotoServer:
    """One moto server for the session, in a process of its own (the lab's
    ``python -m engine.lab.aws serve``): it works on the second core instead of
    competing with the tests for this interpreter's lock."""
    _require_moto()
    from engine.lab.aws import _answers

    port = _free_port()
    home = tmp_path_factory.mktemp("moto")
    pidfile, log = home / "moto.pid", home / "moto.log"
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}  # 1-2 s per reset otherwise; images unused
    process = subprocess.Popen([sys.executable, "-m", "engine.lab.aws", "serve", "--port", str(port),
                                "--pidfile", str(pidfile)], env=env, stdin=subprocess.DEVNULL,
                               stdout=log.open("ab"), stderr=subprocess.STDOUT,
                               preexec_fn=_die_with_parent)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the moto server did not start: {log.read_text()[-500:]}")
        time.sleep(0.1)
    yield MotoServer(url)
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when this test process dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@pytest.fixture
def aws_world(moto_server, tmp_path) -> dict:
    """A freshly reset and seeded world and an inventory for it (``aws_primary``, ``aws_dr``)."""
    from engine.lab.aws import lab_inventory

    moto_server.reset()
    world = moto_server.seed()
    secret_file = tmp_path / "aws-secret"
    secret_file.write_text(moto_server.secret_access_key + "\n")
    inventory = lab_inventory(moto_server.url, world, moto_server.access_key_id,
                              {"file": str(secret_file)})
    path = tmp_path / "aws-inventory.yaml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return {"server": moto_server, "url": moto_server.url, "inventory": str(path),
            "world": world, "vars": inventory["vars"],
            "secrets": [moto_server.access_key_id, moto_server.secret_access_key]}


@pytest.fixture
def service_aws(aws_world) -> dict:
    """The ``service: aws`` of action data cases: ``{{ aws.zone_id }}``, ``{{ aws.url }}`` ..."""
    variables = {"zone_id": aws_world["world"]["zone_id"], "url": aws_world["url"],
                 **aws_world["vars"]}
    return {"inventory": aws_world["inventory"], "vars": {"aws": variables}}


@pytest.fixture
def aws_snapshot(moto_server):
    """``aws_snapshot()``: the moto server's whole state, for before/after comparisons."""
    return moto_server.snapshot

