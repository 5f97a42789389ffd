#!/usr/bin/env python3
"""50 AWS operations against moto: ``runbook run`` (one process, one session) vs. a
bash script of the same 50 ``aws`` CLI calls (one interpreter start per call).

    python bench/aws_bench.py             # 1 warm-up pair + 3 timed pairs
    python bench/aws_bench.py --runs 5

Set-up (untimed): a virtual environment ``bench/.venv-aws`` (git-ignored) with the
``awscli`` package from PyPI, made once; a moto server in a process of its own
(the lab's ``python -m engine.lab.aws serve``); before every run the server is
reset and seeded with the lab's world (``engine.lab.aws.seed_world``).

The 50 operations, the same on both sides and in the same order:
10 × RDS DescribeDBInstances, 10 × Route 53 ListResourceRecordSets,
10 × S3 ListObjectsV2, 10 × EKS DescribeNodegroup, 5 × Route 53
ChangeResourceRecordSets (UPSERT, alternating values), 5 × EKS
UpdateNodegroupConfig (alternating sizes). The engine runs them as 50 ``aws.call``
steps; its plan-time checks make it send 10 more read requests than bash (one
ListResourceRecordSets per Route 53 change, one DescribeNodegroup per scaling),
which counts against the engine. Both sides must exit 0, and the final DNS value
and node group sizes are checked after every run.

Timed in pairs, the order alternating (engine first, then bash first ...), every
number the wall-clock time of the whole process (``python -m engine run`` with
this checkout on PYTHONPATH and a fresh ``--state-dir``; ``bash script.sh``).
Writes ``bench/RESULTS-aws.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV = BENCH / ".venv-aws"
RESULTS = BENCH / "RESULTS-aws.md"
sys.path.insert(0, str(ROOT))

DNS = ["api-dr.us-east-1.elb.amazonaws.com", "api-primary.us-west-2.elb.amazonaws.com"]
SIZES = [(2, 10, 4), (0, 10, 0)]
KEY_ID, SECRET = "AKIABENCHEXAMPLE0001", "bench-secret-access-key-not-real"


# --------------------------------------------------------------------------
# The 50 operations, for both sides
# --------------------------------------------------------------------------

def operations(zone_id: str) -> list[tuple[str, str, str, dict, list[str]]]:
    """(region, service, operation, params, aws CLI argv) x 50."""
    ops = []
    for _ in range(10):
        ops.append(("us-east-1", "rds", "DescribeDBInstances", {"DBInstanceIdentifier": "itdo-erp-dr"},
                    ["rds", "describe-db-instances", "--db-instance-identifier", "itdo-erp-dr"]))
    for _ in range(10):
        ops.append(("us-west-2", "route53", "ListResourceRecordSets", {"HostedZoneId": zone_id},
                    ["route53", "list-resource-record-sets", "--hosted-zone-id", zone_id]))
    for _ in range(10):
        ops.append(("us-west-2", "s3", "ListObjectsV2", {"Bucket": "itdo-erp-backups", "Prefix": "database/"},
                    ["s3api", "list-objects-v2", "--bucket", "itdo-erp-backups", "--prefix", "database/"]))
    group = {"clusterName": "itdo-erp-dr", "nodegroupName": "production-nodes"}
    for _ in range(10):
        ops.append(("us-east-1", "eks", "DescribeNodegroup", group,
                    ["eks", "describe-nodegroup", "--cluster-name", "itdo-erp-dr",
                     "--nodegroup-name", "production-nodes"]))
    for i in range(5):
        batch = {"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
            "Name": "api.itdo-erp.com", "Type": "CNAME", "TTL": 60,
            "ResourceRecords": [{"Value": DNS[i % 2]}]}}]}
        ops.append(("us-west-2", "route53", "ChangeResourceRecordSets",
                    {"HostedZoneId": zone_id, "ChangeBatch": batch},
                    ["route53", "change-resource-record-sets", "--hosted-zone-id", zone_id,
                     "--change-batch", json.dumps(batch)]))
    for i in range(5):
        low, high, want = SIZES[i % 2]
        config = {"minSize": low, "maxSize": high, "desiredSize": want}
        ops.append(("us-east-1", "eks", "UpdateNodegroupConfig", {**group, "scalingConfig": config},
                    ["eks", "update-nodegroup-config", "--cluster-name", "itdo-erp-dr",
                     "--nodegroup-name", "production-nodes", "--scaling-config",
                     f"minSize={low},maxSize={high},desiredSize={want}"]))
    return ops


def write_runbook(path: Path, ops) -> None:
    steps = [{"id": f"op-{n:02d}", "target": "aws_dr" if region == "us-east-1" else "aws_primary",
              "aws.call": {"service": service, "operation": operation, "params": params}}
             for n, (region, service, operation, params, _argv) in enumerate(ops, 1)]
    path.write_text(json.dumps({"name": "50 AWS operations", "steps": steps}, indent=1))


def write_inventory(path: Path, url: str) -> None:
    def target(region: str) -> dict:
        return {"aws": {"region": region, "endpoint_url": url, "access_key_id": KEY_ID,
                        "secret_access_key": "{{ secrets.key }}"}}
    path.write_text(json.dumps({"targets": {"aws_primary": target("us-west-2"),
                                            "aws_dr": target("us-east-1")},
                                "secrets": {"key": {"value": SECRET}}}))


def write_script(path: Path, ops, url: str) -> None:
    lines = ["#!/usr/bin/env bash", "set -euo pipefail", f'aws="{VENV}/bin/aws"']
    for region, _service, _operation, _params, argv in ops:
        quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)
        lines.append(f'"$aws" --endpoint-url {url} --region {region} --output json {quoted} >/dev/null')
    path.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------

def ensure_venv() -> str:
    aws = VENV / "bin" / "aws"
    if not aws.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", "awscli"], check=True)
    return subprocess.run([str(aws), "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()


def start_moto(work: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-m", "engine.lab.aws", "serve", "--port", str(port),
                               "--pidfile", str(work / "moto.pid")], env=env,
                              stdout=(work / "moto.log").open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    from engine.lab.aws import _answers

    while not _answers(url):
        if server.poll() is not None:
            raise SystemExit(f"moto did not start: {(work / 'moto.log').read_text()[-400:]}")
        time.sleep(0.1)
    return server, url


def fresh_world(url: str) -> str:
    from engine.lab.aws import seed_world

    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST", data=b"")
    urllib.request.urlopen(request, timeout=30).read()
    return seed_world(url, KEY_ID, SECRET)["zone_id"]


def check_world(url: str, zone_id: str) -> None:
    import boto3

    kw = {"endpoint_url": url, "aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET}
    records = boto3.client("route53", region_name="us-west-2", **kw).list_resource_record_sets(
        HostedZoneId=zone_id)["ResourceRecordSets"]
    api = next(r for r in records if r["Name"] == "api.itdo-erp.com.")
    assert api["ResourceRecords"] == [{"Value": DNS[0]}], api
    group = boto3.client("eks", region_name="us-east-1", **kw).describe_nodegroup(
        clusterName="itdo-erp-dr", nodegroupName="production-nodes")["nodegroup"]
    assert group["scalingConfig"] == {"minSize": 2, "maxSize": 10, "desiredSize": 4}, group


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------

def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null",
               AWS_EC2_METADATA_DISABLED="true", PYTHONPATH=str(ROOT),
               AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET)
    return env


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=clean_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed (rc={done.returncode}): {(done.stdout + done.stderr)[-800:]}")
    return elapsed


def one_run(side: str, url: str, work: Path, n: int) -> float:
    zone_id = fresh_world(url)
    ops = operations(zone_id)
    if side == "engine":
        write_runbook(work / "runbook.json", ops)
        write_inventory(work / "inventory.json", url)
        argv = [sys.executable, "-m", "engine", "run", "runbook.json", "-i", "inventory.json",
                "--state-dir", f"state-{n}"]
    else:
        write_script(work / "script.sh", ops, url)
        argv = ["bash", "script.sh"]
    elapsed = timed(argv, work)
    check_world(url, zone_id)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed pairs (default 3)")
    options = parser.parse_args()
    cli_version = ensure_venv()
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"engine": [], "bash": []}
    with tempfile.TemporaryDirectory(prefix="aws-bench-") as tmp:
        work = Path(tmp)
        server, url = start_moto(work)
        try:
            for n in range(options.runs + 1):  # the first pair warms caches and is not counted
                order = ("engine", "bash") if n % 2 == 0 else ("bash", "engine")
                for side in order:
                    elapsed = one_run(side, url, work, n)
                    print(f"{'warm-up' if n == 0 else f'run {n}'}: {side} {elapsed:.2f} s", flush=True)
                    if n:
                        times[side].append(elapsed)
        finally:
            server.terminate()
            server.wait(timeout=10)
    write_results(times, cli_version, load_before, os.getloadavg(), options.runs)


def write_results(times: dict, cli_version: str, before, after, runs: int) -> None:
    engine, bash = statistics.median(times["engine"]), statistics.median(times["bash"])
    import boto3
    import moto

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# AWS benchmark: 50 operations, `runbook run` vs. 50 `aws` CLI calls", "",
        f"Written by `python bench/aws_bench.py --runs {runs}` on {stamp}.",
        "What it measures and how: the docstring of `bench/aws_bench.py`.", "",
        "## Result", "",
        f"| | median of {runs} runs |", "|---|---|",
        f"| engine: `runbook run` of 50 `aws.call` steps (one process, one boto3 session per target) | **{engine:.2f} s** |",
        f"| bash: 50 `aws` CLI calls | **{bash:.2f} s** |",
        f"| bash / engine | **{bash / engine:.1f}×** |",
        f"| per operation | engine {engine / 50 * 1000:.0f} ms, bash {bash / 50 * 1000:.0f} ms |", "",
        "## Every run (seconds, whole process)", "",
        "| run | engine | bash |", "|---|---|---|",
        *[f"| {i} | {e:.2f} | {b:.2f} |" for i, (e, b) in enumerate(zip(times["engine"], times["bash"]), 1)],
        "",
        "## Machine", "",
        f"- {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- {cli_version}; boto3 {boto3.__version__}; moto {moto.__version__} (server in its own process)",
        f"- load average before: {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}; "
        f"after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}",
        "- the machine was shared with other work (other builds and test runs): both sides",
        "  pay for it alike, the pairs alternate their order.", "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
