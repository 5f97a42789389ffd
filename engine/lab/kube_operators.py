"""The lab's operators: what CloudNativePG and Argo CD would do, just enough for drills.

- **CloudNativePG** (``Cluster``, postgresql.cnpg.io/v1). When ``status.targetPrimary``
  differs from ``status.currentPrimary`` (what ``kubectl cnpg promote`` writes), it
  really promotes the lab PostgreSQL server behind the target instance
  (``pg_promote()``), then sets ``currentPrimary``, ``currentPrimaryTimestamp`` and
  ``phase: Cluster in healthy state``. A replica cluster whose ``spec.replica.enabled``
  turns false has its designated primary promoted the same way. The old primary is not
  demoted or re-attached (``runbook lab up`` again restores the topology).
- **Argo CD** (``Application``, argoproj.io/v1alpha1). When ``operation`` is set (a
  sync request) — or automated sync is on and the app is OutOfSync — it records
  ``status.operationState.phase: Running``, then ``Succeeded`` with
  ``sync.status: Synced`` and ``health.status: Healthy``, and clears ``operation``,
  as Argo CD's controller does at the end of an operation. Nothing is deployed.

Which lab server an instance is comes from the Cluster's annotations
(``engine.lab.kube_seed``). One process, one watch thread per kind::

    python -m engine.lab.kube_operators --kubeconfig FILE
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from engine.lab.kube_api import MERGE_PATCH, KubeApi, KubeApiError, follow
from engine.lab.kube_seed import (ARGO_GROUP, CNPG_GROUP, HEALTHY, INSTANCES_ANNOTATION,
                                  LAB_DIR_ANNOTATION)

__all__ = ["run_operators", "reconcile_cluster", "reconcile_application"]

CLUSTERS = f"/apis/{CNPG_GROUP}/v1/clusters"
APPLICATIONS = f"/apis/{ARGO_GROUP}/v1alpha1/applications"
SYNC_SECONDS = 0.3  # how long a lab sync stays Running: long enough to be seen waiting
Log = Callable[[str], None]


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _path(obj: dict, collection: str) -> str:
    meta = obj["metadata"]
    group_version = obj["apiVersion"]
    return f"/apis/{group_version}/namespaces/{meta['namespace']}/{collection}/{meta['name']}"


# --------------------------------------------------------------------------
# CloudNativePG
# --------------------------------------------------------------------------

class ClusterOperator:
    """Reconciles Clusters; remembers failed promotions so a failure is not retried in a loop."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.failed: dict[str, str] = {}  # uid -> target that failed

    def __call__(self, api: KubeApi, obj: dict) -> None:
        if self.to_promote(obj) is None:
            return
        # events queue up while a promotion runs: decide again on the object as it is now
        fresh = api.get_or_none(_path(obj, "clusters"))
        instance = self.to_promote(fresh) if fresh else None
        if instance is not None:
            self.switch(api, fresh, instance)

    def to_promote(self, obj: dict) -> str | None:
        """The instance to promote: a new targetPrimary, or the designated primary of a
        replica cluster that is a replica cluster no more."""
        status, spec = obj.get("status") or {}, obj.get("spec") or {}
        target, current = status.get("targetPrimary"), status.get("currentPrimary")
        uid = obj["metadata"].get("uid", "")
        if target and current and target != current:
            return target if self.failed.get(uid) != target else None
        if current and not (spec.get("replica") or {}).get("enabled") \
                and self.failed.get(uid) != current and _in_recovery(obj, current):
            return current
        return None

    def switch(self, api: KubeApi, obj: dict, instance: str) -> None:
        path, name = _path(obj, "clusters") + "/status", obj["metadata"]["name"]
        self.log(f"cnpg: {name}: promoting {instance}")
        api.api("PATCH", path, {"status": {"phase": "Switchover in progress"}}, MERGE_PATCH)
        try:
            _promote(obj, instance)
        except Exception as exc:  # report in the object, as an operator would
            self.failed[obj["metadata"].get("uid", "")] = instance
            self.log(f"cnpg: {name}: promotion of {instance} failed: {exc}")
            api.api("PATCH", path, {"status": {"phase": f"Switchover failed: {exc}"}}, MERGE_PATCH)
            return
        api.api("PATCH", path, {"status": {
            "currentPrimary": instance, "targetPrimary": instance, "currentPrimaryTimestamp": now(),
            "phase": HEALTHY}}, MERGE_PATCH)
        self.log(f"cnpg: {name}: {instance} is the primary")


def reconcile_cluster(log: Log) -> ClusterOperator:
    return ClusterOperator(log)


def _server(obj: dict, instance: str) -> dict:
    """The lab server (its lab.json entry) behind ``instance`` of the Cluster ``obj``."""
    annotations = obj["metadata"].get("annotations") or {}
    roles = json.loads(annotations.get(INSTANCES_ANNOTATION) or "{}")
    if instance not in roles:
        raise LookupError(f"no instance {instance} (instances: {', '.join(roles) or 'none'})")
    lab = json.loads((Path(annotations[LAB_DIR_ANNOTATION]) / "lab.json").read_text())
    return lab[roles[instance]]


def _in_recovery(obj: dict, instance: str) -> bool:
    from engine.connections.postgres import connect, fetch_value

    try:
        with connect(_server(obj, instance)["admin_dsn"]) as conn:
            return bool(fetch_value(conn, "SELECT pg_is_in_recovery()"))
    except Exception:  # no such lab server (a test's own Cluster): nothing to promote
        return False


def _promote(obj: dict, instance: str) -> None:
    from engine.connections.postgres import connect, fetch_value

    with connect(_server(obj, instance)["admin_dsn"]) as conn:
        if fetch_value(conn, "SELECT pg_is_in_recovery()"):
            if not fetch_value(conn, "SELECT pg_promote(true, 60)"):
                raise RuntimeError("pg_promote() did not finish within 60 s")


# --------------------------------------------------------------------------
# Argo CD
# --------------------------------------------------------------------------

def reconcile_application(log: Log) -> Callable[[KubeApi, dict], None]:
    def reconcile(api: KubeApi, obj: dict) -> None:
        if _requested_sync(obj) is None:
            return
        # events queue up while a sync runs: decide again on the object as it is now
        fresh = api.get_or_none(_path(obj, "applications"))
        operation = _requested_sync(fresh) if fresh else None
        if operation is not None:
            _sync(api, fresh, operation, log)
    return reconcile


def _requested_sync(obj: dict) -> dict | None:
    """The operation to run: the one asked for, or an automated sync of an OutOfSync app."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if obj.get("operation"):
        return obj["operation"]
    automated = (spec.get("syncPolicy") or {}).get("automated") is not None
    if automated and (status.get("sync") or {}).get("status") != "Synced":
        return {"sync": {}, "initiatedBy": {"automated": True}}
    return None


def _sync(api: KubeApi, obj: dict, operation: dict, log: Log) -> None:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    path, name = _path(obj, "applications"), obj["metadata"]["name"]
    revision = (operation.get("sync") or {}).get("revision") or \
        (spec.get("source") or {}).get("targetRevision") or "HEAD"
    started = now()
    running = {"operation": operation, "phase": "Running", "message": "syncing", "startedAt": started}
    log(f"argocd: {name}: sync to {revision}")
    api.api("PATCH", path, {"status": {"operationState": running}}, MERGE_PATCH)
    time.sleep(SYNC_SECONDS)
    history = list(status.get("history") or [])
    history.append({"id": len(history), "revision": revision, "deployedAt": now(),
                    "source": spec.get("source")})
    api.api("PATCH", path, {"operation": None, "status": {
        "operationState": {**running, "phase": "Succeeded", "finishedAt": now(),
                           "message": "successfully synced (all tasks run)",
                           "syncResult": {"revision": revision, "source": spec.get("source"),
                                          "resources": []}},
        "sync": {"status": "Synced", "revision": revision}, "health": {"status": "Healthy"},
        "reconciledAt": now(), "history": history}}, MERGE_PATCH)
    log(f"argocd: {name}: Synced, Healthy")


# --------------------------------------------------------------------------
# The process
# --------------------------------------------------------------------------

def run_operators(kubeconfig: Path, stop: threading.Event, log: Log = print) -> None:
    """Follow Clusters and Applications until ``stop`` is set."""
    api = KubeApi.from_kubeconfig(kubeconfig, timeout=30)
    followers = [(CLUSTERS, reconcile_cluster(log), "cnpg"),
                 (APPLICATIONS, reconcile_application(log), "argocd")]
    threads = [threading.Thread(target=follow, args=(api, path, _guarded(handle, log, who),
                                                     stop, log, who), daemon=True)
               for path, handle, who in followers]
    for thread in threads:
        thread.start()
    log(f"operators: following Clusters and Applications on {api.server}")
    for thread in threads:
        thread.join()


def _guarded(handle, log: Log, who: str):
    """One object's failure is logged; the operator goes on with the next event."""
    def guarded(api: KubeApi, obj: dict) -> None:
        try:
            handle(api, obj)
        except (KubeApiError, OSError, ValueError, LookupError) as exc:
            log(f"{who}: {obj.get('metadata', {}).get('name')}: {exc}")
    return guarded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.lab.kube_operators",
                                     description="The lab's CloudNativePG and Argo CD stand-ins.")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run_operators(args.kubeconfig, stop, lambda message: print(message, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
