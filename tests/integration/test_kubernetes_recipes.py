"""The shipped recipes (playbooks/includes) against the lab operators: CloudNativePG
promote really promotes a PostgreSQL replica; Argo CD sync completes an operation."""
from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg

from helpers.run import run_inprocess

from engine.lab.kube_api import MERGE_PATCH
from engine.lab.kube_seed import HEALTHY, INSTANCES_ANNOTATION, LAB_DIR_ANNOTATION

INCLUDES = Path(__file__).resolve().parents[2] / "playbooks" / "includes"
CLUSTERS = "/apis/postgresql.cnpg.io/v1/namespaces/{ns}/clusters"
APPS = "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications"


def in_recovery(server: dict) -> bool:
    with psycopg.connect(server["admin_dsn"], autocommit=True) as conn:
        return conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]


def ensure_namespace(kube_api, name: str) -> None:
    if kube_api.get_or_none(f"/api/v1/namespaces/{name}") is None:
        kube_api.api("POST", "/api/v1/namespaces", {"metadata": {"name": name}})


def lab_cluster(kube_api, namespace: str, name: str, lab: dict, instances: dict,
                spec: dict) -> str:
    """A Cluster whose instances are the PostgreSQL servers of ``lab``; its path."""
    ensure_namespace(kube_api, namespace)
    path = CLUSTERS.format(ns=namespace)
    kube_api.api("POST", path, {
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": name, "annotations": {
            INSTANCES_ANNOTATION: json.dumps(instances), LAB_DIR_ANNOTATION: lab["dir"]}},
        "spec": spec})
    first = next(iter(instances))
    kube_api.api("PATCH", f"{path}/{name}/status", {"status": {
        "instanceNames": list(instances), "currentPrimary": first, "targetPrimary": first,
        "phase": HEALTHY}}, MERGE_PATCH)
    return f"{path}/{name}"


def wait_for(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


CNPG_RUNBOOK = """
name: promote with CloudNativePG
steps:
  - include: {include}
    vars:
      cnpg_target: prod_cluster
      cnpg_namespace: recipe-cnpg
      cnpg_cluster: pg
      cnpg_instance: pg-2
      cnpg_timeout: 2m
"""


def test_cnpg_promote_rehearses_then_promotes_the_real_replica(spare_lab, kube_api,
                                                               service_kubernetes, tmp_path):
    lab = spare_lab("cnpg-recipe")
    path = lab_cluster(kube_api, "recipe-cnpg", "pg", lab, {"pg-1": "primary", "pg-2": "replica"},
                       {"instances": 2})
    text = CNPG_RUNBOOK.format(include=INCLUDES / "cnpg-promote.yaml")
    inventory = [service_kubernetes["inventory"]]
    before = kube_api.api("GET", path)["metadata"]["resourceVersion"]

    (tmp_path / "dry").mkdir()
    dry = run_inprocess(tmp_path / "dry", text, inventories=inventory, dry_run=True)
    assert dry.status == "completed" and dry.handle.outcome.findings == []
    plans = [e.data["plan"] for e in dry.events if e.type == "step.planned"]
    assert plans[0].startswith("patch Cluster recipe-cnpg/pg (status): ")
    assert "status.targetPrimary pg-1 → pg-2" in plans[0]
    assert "status.phase Cluster in healthy state → Switchover in progress" in plans[0]
    assert plans[1].startswith("would check after 'CNPG: promote ")  # the wait: after the patch
    assert kube_api.api("GET", path)["metadata"]["resourceVersion"] == before
    assert in_recovery(lab["replica"])

    (tmp_path / "real").mkdir()
    real = run_inprocess(tmp_path / "real", text, inventories=inventory)
    assert real.status == "completed", real.handle.outcome.message
    assert not in_recovery(lab["replica"])  # promoted for real
    status = kube_api.api("GET", path)["status"]
    assert (status["currentPrimary"], status["phase"]) == ("pg-2", HEALTHY)


def test_cnpg_promote_of_an_unknown_instance_stops_before_the_patch(kube_api, service_kubernetes,
                                                                    spare_lab, tmp_path):
    lab = spare_lab("cnpg-unknown")
    lab_cluster(kube_api, "recipe-cnpg", "pg-unknown", lab, {"pg-1": "primary"}, {"instances": 1})
    text = CNPG_RUNBOOK.format(include=INCLUDES / "cnpg-promote.yaml").replace(
        "cnpg_cluster: pg\n", "cnpg_cluster: pg-unknown\n")
    real = run_inprocess(tmp_path, text, inventories=[service_kubernetes["inventory"]])
    assert real.status == "failed"
    assert "pg-unknown has no instance pg-2" in real.handle.outcome.message
    assert in_recovery(lab["replica"])


def test_a_replica_cluster_that_stops_being_one_is_promoted(spare_lab, kube_api,
                                                            service_kubernetes, tmp_path):
    """The seed's region failover: `spec.replica.enabled: false` on the DR cluster."""
    lab = spare_lab("cnpg-replica-cluster")
    lab_cluster(kube_api, "recipe-dr", "dr", lab, {"dr-1": "replica"},
                {"instances": 1, "replica": {"enabled": True, "source": "postgres-cluster"}})
    text = """
name: promote the DR database
steps:
  - {target: dr_cluster,
     kubernetes.patch: {api_version: postgresql.cnpg.io/v1, kind: Cluster, namespace: recipe-dr,
                        name: dr, patch: {spec: {replica: {enabled: false}}}}}
"""
    assert in_recovery(lab["replica"])
    real = run_inprocess(tmp_path, text, inventories=[service_kubernetes["inventory"]])
    assert real.status == "completed", real.handle.outcome.message
    wait_for(lambda: not in_recovery(lab["replica"]))


def new_application(kube_api, name: str) -> str:
    if kube_api.get_or_none(f"{APPS}/{name}"):
        kube_api.api("DELETE", f"{APPS}/{name}")
    kube_api.api("POST", APPS, {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name},
        "spec": {"project": "default", "source": {"repoURL": "https://example.com/repo",
                                                  "targetRevision": "HEAD", "path": "app"},
                 "destination": {"server": "https://kubernetes.default.svc",
                                 "namespace": "disaster-recovery"}},
        "status": {"sync": {"status": "OutOfSync"}, "health": {"status": "Healthy"}}})
    return f"{APPS}/{name}"


ARGO_RUNBOOK = """
name: sync with Argo CD
steps:
  - include: {include}
    vars:
      argocd_target: dr_cluster
      argocd_app: {app}
      argocd_force: true
      argocd_timeout: 1m
"""


def test_argocd_sync_rehearses_then_syncs(kube_api, service_kubernetes, tmp_path):
    path = new_application(kube_api, "recipe-sync")
    before = kube_api.api("GET", path)["metadata"]["resourceVersion"]
    text = ARGO_RUNBOOK.format(include=INCLUDES / "argocd-sync.yaml", app="recipe-sync")
    inventory = [service_kubernetes["inventory"]]

    (tmp_path / "dry").mkdir()
    dry = run_inprocess(tmp_path / "dry", text, inventories=inventory, dry_run=True)
    assert dry.status == "completed" and dry.handle.outcome.findings == []
    plans = [e.data["plan"] for e in dry.events if e.type == "step.planned"]
    assert plans[0].startswith("patch Application argocd/recipe-sync: operation (none) → {")
    assert '"force": true' in plans[0] or "..." in plans[0]
    assert kube_api.api("GET", path)["metadata"]["resourceVersion"] == before

    (tmp_path / "real").mkdir()
    real = run_inprocess(tmp_path / "real", text, inventories=inventory)
    assert real.status == "completed", real.handle.outcome.message
    app = kube_api.api("GET", path)
    assert "operation" not in app
    assert app["status"]["operationState"]["phase"] == "Succeeded"
    assert app["status"]["operationState"]["operation"]["sync"]["syncStrategy"] == \
        {"hook": {"force": True}}
    assert (app["status"]["sync"]["status"], app["status"]["health"]["status"]) == ("Synced", "Healthy")


def test_turning_on_automated_sync_syncs_the_dr_app(kube_api, service_kubernetes, tmp_path):
    """The seed's failover patches syncPolicy.automated on itdo-erp-dr."""
    path = new_application(kube_api, "recipe-auto")
    text = """
name: enable automated sync
steps:
  - {target: dr_cluster,
     kubernetes.patch: {api_version: argoproj.io/v1alpha1, kind: Application, namespace: argocd,
                        name: recipe-auto,
                        patch: {spec: {syncPolicy: {automated: {prune: true, selfHeal: true}}}}}}
  - {target: dr_cluster,
     kubernetes.wait: {kind: Application, namespace: argocd, name: recipe-auto, timeout: 30,
                       that: "object.status.sync.status == 'Synced'"}}
"""
    real = run_inprocess(tmp_path, text, inventories=[service_kubernetes["inventory"]])
    assert real.status == "completed", real.handle.outcome.message
    assert kube_api.api("GET", path)["status"]["operationState"]["phase"] == "Succeeded"
