"""`runbook lab up --with kubernetes`: the seed's world on a real control plane, its
status and inventory, and `lab down` leaving nothing behind."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import yaml

from helpers.run import pid_alive, runbook_cli

from engine.lab.kube_api import KubeApi
from engine.lab.sandbox import lab_status


def test_the_seed_world_is_there(kube_api):
    production = kube_api.api("GET", "/apis/apps/v1/namespaces/production/deployments")["items"]
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in production} == \
        {"backend-api": 3, "frontend-app": 3, "worker-service": 3}
    dr = kube_api.api("GET", "/apis/apps/v1/namespaces/disaster-recovery/deployments")["items"]
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in dr} == \
        {"backend-api": 0, "frontend-app": 0, "worker-service": 0}
    config = kube_api.api("GET", "/api/v1/namespaces/production/configmaps/backend-config")
    assert config["data"]["DATABASE_HOST"] == "postgres-cluster-1"
    cluster = kube_api.api("GET", "/apis/postgresql.cnpg.io/v1/namespaces/production/clusters/"
                                  "postgres-cluster")
    assert cluster["status"]["instanceNames"] == ["postgres-cluster-1", "postgres-cluster-2"]
    apps = kube_api.api("GET", "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications")["items"]
    assert {"itdo-erp", "itdo-erp-dr"} <= {a["metadata"]["name"] for a in apps}


def test_the_kubelet_stand_in_makes_the_real_controllers_roll_out(kube_api):
    deployment = kube_api.api("GET", "/apis/apps/v1/namespaces/production/deployments/backend-api")
    assert deployment["status"]["readyReplicas"] == 3
    pods = kube_api.api("GET", "/api/v1/namespaces/production/pods?labelSelector=app=backend-api")
    assert [p["status"]["phase"] for p in pods["items"]] == ["Running"] * 3


def test_status_and_inventory(kube_lab):
    service = lab_status(kube_lab["dir"])["services"]["kubernetes"]
    assert service["running"] and "readyz ok; all processes running" in service["detail"]
    inventory = yaml.safe_load(Path(kube_lab["inventory"]).read_text())
    kubeconfig = kube_lab["parts"]["kubernetes"]["kubeconfig"]
    for name in ("lab_cluster", "prod_cluster", "dr_cluster"):
        assert inventory["targets"][name] == {"kubernetes": {"kubeconfig": kubeconfig, "context": "lab"}}
    assert inventory["targets"]["lab_cluster_viewer"]["kubernetes"]["kubeconfig"].endswith("kubeconfig-viewer")
    assert oct(os.stat(kubeconfig).st_mode & 0o777) == "0o600"  # it holds the token


def test_lab_up_status_down_from_the_command_line(tmp_path):
    """A second lab of its own: started, shown and stopped with nothing left behind."""
    lab_dir = tmp_path / "lab"
    up = runbook_cli("lab", "up", "--dir", lab_dir, "--with", "kubernetes", cwd=tmp_path, timeout=300)
    try:
        assert up.rc == 0, up.output
        assert re.search(r"kubernetes\s+running\s+pid \d+\s+port \d+\s+https://127\.0\.0\.1:\d+ readyz ok",
                         up.stdout), up.stdout
        status = runbook_cli("lab", "status", "--dir", lab_dir, cwd=tmp_path)
        assert "readyz ok; all processes running" in status.stdout
        state = yaml.safe_load((lab_dir / "lab.json").read_text())
        workdir = Path(state["parts"]["kubernetes"]["workdir"])
        pids = [entry["pid"] for entry in yaml.safe_load((workdir / "pids.json").read_text()).values()]
        assert len(pids) == 5  # etcd, apiserver, controller manager, kubelet, operators
        etcd_dir = Path(yaml.safe_load((workdir / "cluster.json").read_text())["etcd_dir"])
        assert etcd_dir.is_dir()
        api = KubeApi.from_kubeconfig(state["parts"]["kubernetes"]["kubeconfig"])
        assert api.api("GET", "/readyz") == "ok"
    finally:
        down = runbook_cli("lab", "down", "--dir", lab_dir, cwd=tmp_path, timeout=120)
    assert down.rc == 0 and "kubernetes" in down.stdout, down.output
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(pid_alive(p) for p in pids)
    assert not etcd_dir.exists() and not workdir.exists()
