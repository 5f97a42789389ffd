"""The lab cluster's world, shaped like the ITDO ERP seed (seeds/000): what the
shipped Kubernetes playbooks act on.

- namespaces ``production``, ``disaster-recovery`` and ``argocd``;
- Deployments ``backend-api``, ``frontend-app``, ``worker-service``: 3 replicas in
  production, scaled to 0 in disaster-recovery (the DR region waits cold);
- ConfigMap ``backend-config`` (``DATABASE_HOST: postgres-cluster-1`` ...);
- the CloudNativePG ``Cluster`` CRD (postgresql.cnpg.io/v1, status and scale
  subresources) with ``production/postgres-cluster``, whose instances
  ``postgres-cluster-1``/``-2`` are the lab's real PostgreSQL primary and replica,
  and the replica cluster ``disaster-recovery/postgres-dr-replica``;
- the Argo CD ``Application`` CRD (argoproj.io/v1alpha1, no status subresource, as
  in Argo CD) with ``argocd/itdo-erp`` (Synced) and ``argocd/itdo-erp-dr`` (OutOfSync);
- a Role that lets the user ``lab-viewer`` read ``production`` and nothing else.

The lab operators (``engine.lab.kube_operators``) find the PostgreSQL servers from the
annotations below: which lab role (primary/replica) each instance is, and the lab dir
whose ``lab.json`` has their admin DSNs.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from engine.lab.kube_api import MERGE_PATCH, KubeApi, KubeApiError, KubeClusterError

__all__ = ["seed_world", "INSTANCES_ANNOTATION", "LAB_DIR_ANNOTATION", "APPLICATIONS",
           "CNPG_GROUP", "ARGO_GROUP", "HEALTHY"]

INSTANCES_ANNOTATION = "lab.runbook-engine/instances"
LAB_DIR_ANNOTATION = "lab.runbook-engine/lab-dir"
CNPG_GROUP, ARGO_GROUP = "postgresql.cnpg.io", "argoproj.io"
HEALTHY = "Cluster in healthy state"
NAMESPACES = ("production", "disaster-recovery", "argocd")
APPS = {"backend-api": "backend", "frontend-app": "frontend", "worker-service": "worker"}
APPLICATIONS = {"itdo-erp": ("production", "Synced"), "itdo-erp-dr": ("disaster-recovery", "OutOfSync")}
_ESTABLISH_TIMEOUT = 30.0


def seed_world(api: KubeApi, lab_dir: Path) -> dict:
    """Create every seed object; returns counts for the lab's record."""
    for namespace in NAMESPACES:
        _create(api, "/api/v1/namespaces", {"metadata": {"name": namespace}})
    for namespace, replicas in (("production", 3), ("disaster-recovery", 0)):
        for name, tier in APPS.items():
            _create(api, f"/apis/apps/v1/namespaces/{namespace}/deployments",
                    _deployment(name, tier, replicas))
        _create(api, f"/api/v1/namespaces/{namespace}/configmaps", _backend_config(namespace))
    _grant_viewer(api)
    _create_crds(api)
    _create_clusters(api, lab_dir)
    for name, (destination, sync) in APPLICATIONS.items():
        _create(api, f"/apis/{ARGO_GROUP}/v1alpha1/namespaces/argocd/applications",
                _application(name, destination, sync))
    return {"namespaces": len(NAMESPACES), "deployments": 2 * len(APPS), "clusters": 2,
            "applications": len(APPLICATIONS)}


def _create(api: KubeApi, path: str, body: dict) -> dict:
    try:
        return api.api("POST", path, body)
    except KubeApiError as exc:
        raise KubeClusterError(f"seeding {path} {body['metadata']['name']}: {exc}") from None


def _deployment(name: str, tier: str, replicas: int) -> dict:
    labels = {"app": name, "tier": tier, "part-of": "itdo-erp"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                "name": name, "image": f"registry.example.com/itdo-erp/{name}:1.4.2",
                "envFrom": [{"configMapRef": {"name": "backend-config"}}],
                "ports": [{"containerPort": 8000}]}]}},
        },
    }


def _backend_config(namespace: str) -> dict:
    host = "postgres-cluster-1" if namespace == "production" else "postgres-dr-replica"
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "backend-config"},
            "data": {"DATABASE_HOST": host, "DATABASE_PORT": "5432", "DATABASE_NAME": "erp",
                     "REDIS_HOST": "redis-cluster" if namespace == "production" else "redis-dr-cluster"}}


def _grant_viewer(api: KubeApi) -> None:
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/production"
    _create(api, f"{rbac}/roles", {"metadata": {"name": "lab-read"}, "rules": [
        {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]})
    _create(api, f"{rbac}/rolebindings", {
        "metadata": {"name": "lab-viewer-read"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lab-read"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "lab-viewer"}]})


# --------------------------------------------------------------------------
# Custom resources
# --------------------------------------------------------------------------

def _crd(group: str, version: str, kind: str, plural: str, short: list[str], subresources: dict,
         columns: list[tuple[str, str]]) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                           "shortNames": short},
                 "versions": [{"name": version, "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {
                                   "type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                               "subresources": subresources,
                               "additionalPrinterColumns": [
                                   {"name": n, "type": "string", "jsonPath": p} for n, p in columns]}]},
    }


def _create_crds(api: KubeApi) -> None:
    cnpg = _crd(CNPG_GROUP, "v1", "Cluster", "clusters", [], {
        "status": {}, "scale": {"specReplicasPath": ".spec.instances",
                                "statusReplicasPath": ".status.instances"}},
        [("Instances", ".spec.instances"), ("Status", ".status.phase"),
         ("Primary", ".status.currentPrimary")])
    argo = _crd(ARGO_GROUP, "v1alpha1", "Application", "applications", ["app", "apps"], {},
                [("Sync Status", ".status.sync.status"), ("Health Status", ".status.health.status")])
    for crd in (cnpg, argo):
        _create(api, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    for crd, version in ((cnpg, "v1"), (argo, "v1alpha1")):
        _wait_served(api, crd["metadata"]["name"], f"/apis/{crd['spec']['group']}/{version}")


def _wait_served(api: KubeApi, name: str, group_path: str) -> None:
    """Until the CRD is Established and its group answers (creating a CR sooner is a 404)."""
    deadline = time.monotonic() + _ESTABLISH_TIMEOUT
    while time.monotonic() < deadline:
        crd = api.get_or_none(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}") or {}
        conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions", [])}
        if conditions.get("Established") == "True" and api.get_or_none(group_path):
            return
        time.sleep(0.1)
    raise KubeClusterError(f"CRD {name} not served after {_ESTABLISH_TIMEOUT:.0f}s")


def _create_clusters(api: KubeApi, lab_dir: Path) -> None:
    for namespace, name, instances, spec in (
            ("production", "postgres-cluster",
             {"postgres-cluster-1": "primary", "postgres-cluster-2": "replica"},
             {"instances": 2, "primaryUpdateStrategy": "unsupervised",
              "postgresql": {"parameters": {"max_wal_size": "2GB", "wal_compression": "on"}}}),
            ("disaster-recovery", "postgres-dr-replica", {"postgres-dr-replica-1": "replica"},
             {"instances": 2, "replica": {"enabled": True, "source": "postgres-cluster"}})):
        path = f"/apis/{CNPG_GROUP}/v1/namespaces/{namespace}/clusters"
        _create(api, path, {
            "apiVersion": f"{CNPG_GROUP}/v1", "kind": "Cluster",
            "metadata": {"name": name, "annotations": {
                INSTANCES_ANNOTATION: json.dumps(instances), LAB_DIR_ANNOTATION: str(lab_dir)}},
            "spec": spec})
        first = next(iter(instances))
        api.api("PATCH", f"{path}/{name}/status", {"status": {
            "instances": spec["instances"], "readyInstances": spec["instances"],
            "instanceNames": list(instances), "phase": HEALTHY,
            "currentPrimary": first, "targetPrimary": first}}, MERGE_PATCH)


def _application(name: str, destination: str, sync: str) -> dict:
    return {
        "apiVersion": f"{ARGO_GROUP}/v1alpha1", "kind": "Application",
        "metadata": {"name": name},
        "spec": {
            "project": "disaster-recovery" if destination != "production" else "default",
            "source": {"repoURL": "https://github.com/company/itdo-erp-infrastructure",
                       "targetRevision": "HEAD", "path": f"environments/{destination}"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": destination},
            # the DR app syncs on demand (until a failover turns automated sync on)
            "syncPolicy": {"syncOptions": ["CreateNamespace=true"],
                           **({"automated": {"prune": False, "selfHeal": False}}
                              if sync == "Synced" else {})},
        },
        "status": {"sync": {"status": sync, "revision": "lab-0"},
                   "health": {"status": "Healthy"}},
    }
