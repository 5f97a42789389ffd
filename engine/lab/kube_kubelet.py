"""The lab's kubelet stand-in: marks every pod Running and Ready.

There is no scheduler and no container runtime in the lab, so nothing runs in
the pods; this loop PATCHes each pod's status the way a healthy kubelet would,
so the **real** controllers count ``readyReplicas`` and complete rolling
restarts. Pods annotated ``lab.runbook-engine/kubelet: ignore`` are left
alone, so a test can hold a pod unready (a rollout that never finishes).

``python -m engine.lab.kube_cluster kubelet --workdir DIR`` runs it (that is
what ``start_cluster`` starts).
"""
from __future__ import annotations

import hashlib
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from engine.lab.kube_api import MERGE_PATCH, KubeApi, KubeApiError, follow

__all__ = ["run_kubelet", "ready_status", "IGNORE_ANNOTATION"]

# Pods carrying this annotation are left alone by the kubelet stand-in, so a
# test can keep a pod unready (e.g. to see a rollout time out).
IGNORE_ANNOTATION = "lab.runbook-engine/kubelet"

READY_CONDITIONS = ("Initialized", "PodScheduled", "ContainersReady", "Ready")


def run_kubelet(
    kubeconfig_or_server: str | Path,
    token: str | None = None,
    stop_event: threading.Event | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Mark every pod Running and Ready (status only) until ``stop_event``.

    Pass a kubeconfig written by start_cluster, or a server URL and its
    token (TLS then unverified). Watches pods in all namespaces and falls
    back to polling every 0.2 s while the watch fails. Pods annotated
    ``lab.runbook-engine/kubelet: ignore`` are left alone.
    """
    client = _kubelet_client(kubeconfig_or_server, token)
    log(f"kubelet: marking pods ready on {client.server}")
    follow(client, "/api/v1/pods", lambda api, pod: _mark_ready_if_needed(api, pod, log),
           stop_event or threading.Event(), log, "kubelet")


def _kubelet_client(kubeconfig_or_server: str | Path, token: str | None) -> KubeApi:
    target = str(kubeconfig_or_server)
    if target.startswith("https://") or target.startswith("http://"):
        if not token:
            raise ValueError("a server URL needs a token")
        return KubeApi(target.rstrip("/"), token, timeout=10)
    client = KubeApi.from_kubeconfig(Path(target))
    return KubeApi(client.server, token or client.token, client.ca_pem, timeout=10)


def _needs_marking(pod: dict) -> bool:
    meta, status = pod.get("metadata", {}), pod.get("status", {})
    if meta.get("deletionTimestamp") or meta.get("annotations", {}).get(IGNORE_ANNOTATION) == "ignore":
        return False
    if status.get("phase") in ("Succeeded", "Failed"):
        return False
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
    ready = {c.get("name"): c.get("ready") for c in status.get("containerStatuses", [])}
    containers = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
    return (
        status.get("phase") != "Running"
        or any(conditions.get(t) != "True" for t in READY_CONDITIONS)
        or not all(ready.get(name) for name in containers)
    )


def _mark_ready_if_needed(client: KubeApi, pod: dict, log) -> None:
    if not _needs_marking(pod):
        return
    meta = pod["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
    try:
        client.api("PATCH", path, {"status": ready_status(pod)}, MERGE_PATCH)
    except KubeApiError as exc:
        if exc.status != 404:  # a pod deleted meanwhile is not an error
            raise
        return
    log(f"kubelet: {meta['namespace']}/{meta['name']} Running, Ready")


def ready_status(pod: dict) -> dict:
    """The status a healthy kubelet would report for ``pod``."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    uid = pod["metadata"].get("uid", pod["metadata"]["name"])
    digest = hashlib.sha256(uid.encode()).digest()
    pod_ip = f"10.244.{digest[0]}.{digest[1] % 254 + 1}"
    spec = pod.get("spec", {})
    status = {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": pod.get("status", {}).get("startTime") or now,
        "conditions": [
            {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
            for t in READY_CONDITIONS
        ],
        "containerStatuses": [_container_status(c, uid, now, running=True) for c in spec.get("containers", [])],
    }
    if spec.get("initContainers"):
        status["initContainerStatuses"] = [
            _container_status(c, uid, now, running=False) for c in spec["initContainers"]
        ]
    return status


def _container_status(container: dict, uid: str, now: str, running: bool) -> dict:
    state = (
        {"running": {"startedAt": now}}
        if running
        else {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}
    )
    return {
        "name": container["name"],
        "image": container.get("image", ""),
        "imageID": "",
        "containerID": f"lab://{uid}/{container['name']}",
        "ready": running,
        "started": running,
        "restartCount": 0,
        "state": state,
    }
