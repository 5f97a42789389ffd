"""A rehearsal of every kubernetes verb against the real apiserver changes nothing, plans
exactly the mutating steps the real run then executes, and plans (does not run) the
reads of what a planned step changes."""
from __future__ import annotations

import pytest

from helpers.run import run_inprocess

NAMESPACES = ("production", "disaster-recovery", "argocd", "rehearsal")
COLLECTIONS = ("/apis/apps/v1/namespaces/{ns}/deployments", "/apis/apps/v1/namespaces/{ns}/replicasets",
               "/api/v1/namespaces/{ns}/pods", "/api/v1/namespaces/{ns}/configmaps",
               "/apis/postgresql.cnpg.io/v1/namespaces/{ns}/clusters",
               "/apis/argoproj.io/v1alpha1/namespaces/{ns}/applications")

SETUP = """
name: rehearsal set-up
steps:
  - target: lab_cluster
    kubernetes.apply:
      force: true
      manifest:
        - {apiVersion: v1, kind: Namespace, metadata: {name: rehearsal}}
        - apiVersion: apps/v1
          kind: Deployment
          metadata: {name: web, namespace: rehearsal}
          spec:
            replicas: 2
            selector: {matchLabels: {app: web}}
            template:
              metadata: {labels: {app: web}}
              spec: {containers: [{name: web, image: registry.example.com/web:1}]}
        - apiVersion: v1
          kind: ConfigMap
          metadata: {name: web-config, namespace: rehearsal}
          data: {DATABASE_HOST: postgres-cluster-1}
        - apiVersion: v1
          kind: ConfigMap
          metadata: {name: old-config, namespace: rehearsal}
          data: {A: "1"}
        - apiVersion: postgresql.cnpg.io/v1
          kind: Cluster
          metadata: {name: pg, namespace: rehearsal}
          spec: {instances: 2}
  - target: lab_cluster
    kubernetes.delete: {kind: ConfigMap, namespace: rehearsal, name: new-config}
  - target: lab_cluster
    kubernetes.wait: {kind: Deployment, namespace: rehearsal, name: web, for: rollout, timeout: 60}
"""

EVERY_VERB = """
name: every verb
steps:
  - {id: probe-get, target: lab_cluster,
     kubernetes.get: {kind: Deployment, namespace: production, name: backend-api}}
  - {id: probe-wait, target: lab_cluster,
     kubernetes.wait: {kind: Deployment, namespace: production, name: backend-api, for: rollout}}
  - {id: scale, target: lab_cluster,
     kubernetes.scale: {kind: Deployment, namespace: rehearsal, name: web, replicas: 3}}
  - {id: patch, target: lab_cluster,
     kubernetes.patch: {kind: ConfigMap, namespace: rehearsal, name: web-config,
                        patch: {data: {DATABASE_HOST: postgres-cluster-2}}}}
  - {id: restart, target: lab_cluster,
     kubernetes.rollout_restart: {kind: Deployment, namespace: rehearsal, name: web, timeout: 60}}
  - id: apply
    target: lab_cluster
    kubernetes.apply:
      manifest:
        - {apiVersion: v1, kind: ConfigMap, metadata: {name: new-config, namespace: rehearsal},
           data: {B: "2"}}
  - {id: delete, target: lab_cluster,
     kubernetes.delete: {kind: ConfigMap, namespace: rehearsal, name: old-config}}
  - {id: cnpg, target: lab_cluster,
     kubernetes.patch: {kind: Cluster, namespace: rehearsal, name: pg, subresource: status,
                        patch: {status: {targetPrimary: pg-2}}}}
  - {id: argocd, target: lab_cluster,
     kubernetes.patch: {kind: Application, namespace: argocd, name: itdo-erp-dr,
                        patch: {operation: {sync: {revision: HEAD}}}}}
  - {id: wait-rollout, target: lab_cluster,
     kubernetes.wait: {kind: Deployment, namespace: rehearsal, name: web, for: rollout, timeout: 60}}
  - {id: pods, target: lab_cluster,
     kubernetes.get: {kind: Pod, namespace: rehearsal, label_selector: app=web}}
"""
MUTATING = {"scale", "patch", "restart", "apply", "delete", "cnpg", "argocd"}


def versions(kube_api) -> dict:
    """resourceVersion of every object of the kinds the runbook touches, in its namespaces."""
    found = {}
    for namespace in NAMESPACES:
        for collection in COLLECTIONS:
            path = collection.format(ns=namespace)
            for item in kube_api.api("GET", path)["items"]:
                found[(path, item["metadata"]["name"])] = item["metadata"]["resourceVersion"]
    return found


@pytest.fixture
def rehearsal_ns(service_kubernetes, tmp_path):
    (tmp_path / "setup").mkdir()
    ran = run_inprocess(tmp_path / "setup", SETUP, inventories=[service_kubernetes["inventory"]])
    assert ran.status == "completed", ran.handle.outcome.message
    return service_kubernetes


def test_a_dry_run_of_every_verb_changes_no_object(rehearsal_ns, kube_api, tmp_path):
    for name in ("dry", "real"):
        (tmp_path / name).mkdir()
    before = versions(kube_api)
    dry = run_inprocess(tmp_path / "dry", EVERY_VERB, inventories=[rehearsal_ns["inventory"]],
                        dry_run=True)
    assert dry.status == "completed"
    assert dry.handle.outcome.findings == []
    assert versions(kube_api) == before
    assert len(before) > 30  # the comparison covered the seed objects and ours


def test_the_plan_lists_exactly_the_mutating_steps_the_run_executes(rehearsal_ns, tmp_path):
    for name in ("dry", "real"):
        (tmp_path / name).mkdir()
    inventory = [rehearsal_ns["inventory"]]
    dry = run_inprocess(tmp_path / "dry", EVERY_VERB, inventories=inventory, dry_run=True)
    planned = {e.step["id"] for e in dry.events if e.type == "step.planned" and e.data["mutates"]}
    assert planned == MUTATING
    plans = {e.step["id"]: e.data["plan"] for e in dry.events if e.type == "step.planned"}
    assert plans["scale"] == "scale rehearsal/Deployment/web 2 → 3"
    assert plans["patch"] == ("patch ConfigMap rehearsal/web-config: data.DATABASE_HOST "
                              "postgres-cluster-1 → postgres-cluster-2")
    assert plans["apply"] == "create ConfigMap rehearsal/new-config"
    assert plans["delete"] == "delete ConfigMap rehearsal/old-config (propagation Background)"
    assert plans["argocd"].startswith("patch Application argocd/itdo-erp-dr: operation (none) → ")

    real = run_inprocess(tmp_path / "real", EVERY_VERB, inventories=inventory)
    assert real.status == "completed", real.handle.outcome.message
    changed = {e.step["id"] for e in real.events if e.type == "step.succeeded" and e.data["changed"]}
    assert changed == MUTATING


def test_reads_of_what_a_planned_step_changes_are_planned_not_run(rehearsal_ns, tmp_path):
    (tmp_path / "dry").mkdir()
    dry = run_inprocess(tmp_path / "dry", EVERY_VERB, inventories=[rehearsal_ns["inventory"]],
                        dry_run=True)
    ran = {e.step["id"] for e in dry.events if e.type == "step.succeeded"}
    planned = {e.step["id"]: e.data["plan"] for e in dry.events if e.type == "step.planned"}
    assert ran == {"probe-get", "probe-wait"}  # pre-flight probes of untouched objects
    assert planned["wait-rollout"].startswith("would check after 'restart'")
    assert planned["pods"].startswith("would check after 'restart'")  # its pods are replaced


def test_a_no_change_plan_lets_later_reads_run(service_kubernetes, tmp_path):
    text = """
name: scale to what it is
steps:
  - {id: same, target: lab_cluster,
     kubernetes.scale: {kind: Deployment, namespace: production, name: frontend-app, replicas: 3}}
  - {id: read, target: lab_cluster,
     kubernetes.get: {kind: Deployment, namespace: production, name: frontend-app}}
"""
    dry = run_inprocess(tmp_path, text, inventories=[service_kubernetes["inventory"]], dry_run=True)
    assert dry.end("same").data["plan"] == \
        "no change: production/Deployment/frontend-app already at 3 replicas"
    assert dry.end("read").type == "step.succeeded"


def test_a_refused_plan_is_a_finding_and_strict_fails(service_kubernetes, tmp_path):
    text = """
name: typo
steps:
  - {id: typo, target: lab_cluster,
     kubernetes.patch: {kind: ConfigMap, namespace: production, name: backend-confg,
                        patch: {data: {DATABASE_HOST: postgres-cluster-2}}}}
"""
    dry = run_inprocess(tmp_path, text, inventories=[service_kubernetes["inventory"]],
                        dry_run=True, strict=True)
    findings = dry.handle.outcome.findings
    assert [f["step"] for f in findings] == ["typo"]
    assert 'configmaps "backend-confg" not found (HTTP 404 Not Found)' in findings[0]["message"]
    assert "not found" in dry.end("typo").data["finding"]
    assert dry.handle.outcome.exit_code == 1


def test_a_refusal_after_a_planned_change_to_the_same_object_is_no_finding(service_kubernetes,
                                                                          tmp_path):
    text = """
name: create then patch
steps:
  - {id: create, target: lab_cluster,
     kubernetes.apply: {manifest: {apiVersion: v1, kind: ConfigMap,
                                   metadata: {name: made-later, namespace: production}}}}
  - {id: patch, target: lab_cluster,
     kubernetes.patch: {kind: ConfigMap, namespace: production, name: made-later,
                        patch: {data: {A: "1"}}}}
"""
    dry = run_inprocess(tmp_path, text, inventories=[service_kubernetes["inventory"]], dry_run=True)
    assert dry.handle.outcome.findings == []
    assert "may hold after 'create'" in dry.end("patch").data["plan"]
