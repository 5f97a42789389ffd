"""kubectl's rollout rule against a naive ``readyReplicas == replicas``, on the real
deployment controller: new pods held unready (the kubelet stand-in ignores pods
annotated ``lab.runbook-engine/kubelet: ignore``; the test plays kubelet for the old
ones), so the rollout cannot finish."""
from __future__ import annotations

import time

import pytest

from helpers.run import run_inprocess

from engine.actions.kubernetes.rollout import rollout_state
from engine.lab.kube_api import MERGE_PATCH, KubeApiError
from engine.lab.kube_kubelet import IGNORE_ANNOTATION, ready_status

NS = "rollout"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"


def naive_ready(obj: dict) -> bool:
    """What a check without kubectl's rule looks at: ready pods, as many as wanted."""
    return (obj.get("status") or {}).get("readyReplicas") == obj["spec"]["replicas"]


def deployment(name: str, max_surge: int, max_unavailable: int) -> dict:
    """3 replicas whose pods the kubelet stand-in leaves alone (the test decides)."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                         "maxSurge": max_surge, "maxUnavailable": max_unavailable}},
                     "template": {"metadata": {"labels": {"app": name},
                                               "annotations": {IGNORE_ANNOTATION: "ignore"}},
                                  "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}}


def wait_for(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def mark_pods_ready(kube_api, app: str) -> int:
    """Play kubelet for the pods of ``app`` that exist now; how many were marked."""
    pods = kube_api.api("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app={app}")["items"]
    for pod in pods:
        try:
            kube_api.api("PATCH", f"/api/v1/namespaces/{NS}/pods/{pod['metadata']['name']}/status",
                         {"status": ready_status(pod)}, MERGE_PATCH)
        except KubeApiError as exc:
            if exc.status != 404:  # a pod the controller deleted meanwhile
                raise
    return len(pods)


@pytest.fixture
def held(kube_api, request):
    """A rolled-out Deployment whose next pods will stay unready; yields its name."""
    name, surge, unavailable = request.param
    if kube_api.get_or_none(f"/api/v1/namespaces/{NS}") is None:
        kube_api.api("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    if kube_api.get_or_none(f"{DEPLOYMENTS}/{name}"):
        kube_api.api("DELETE", f"{DEPLOYMENTS}/{name}")
        wait_for(lambda: kube_api.get_or_none(f"{DEPLOYMENTS}/{name}") is None)
    kube_api.api("POST", DEPLOYMENTS, deployment(name, surge, unavailable))
    wait_for(lambda: len(kube_api.api(
        "GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app={name}")["items"]) == 3)
    mark_pods_ready(kube_api, name)
    wait_for(lambda: rollout_state(kube_api.api("GET", f"{DEPLOYMENTS}/{name}"))[0])
    return name


def restart_runbook(name: str, timeout: int) -> str:
    return f"""
name: restart a held deployment
steps:
  - {{id: restart, target: lab_cluster,
     kubernetes.rollout_restart: {{kind: Deployment, namespace: {NS}, name: {name}, timeout: {timeout}}}}}
"""


@pytest.mark.parametrize("held", [("surge-zero", 0, 1)], indirect=True)
def test_a_restart_is_not_done_when_the_server_accepts_it(held, kube_api):
    patch = {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2024-01-15T14:30:00Z"}}}}}
    answer = kube_api.api("PATCH", f"{DEPLOYMENTS}/{held}", patch,
                          "application/strategic-merge-patch+json")
    # the object the restart returns still counts the old pods: 3 ready of 3
    assert naive_ready(answer)
    done, waiting = rollout_state(answer, answer["metadata"]["generation"])
    assert not done and "observe" in waiting


@pytest.mark.parametrize("held", [("surge-zero-run", 0, 1)], indirect=True)
def test_rollout_restart_waits_by_kubectls_rule_and_times_out_on_held_pods(
        held, service_kubernetes, kube_api, tmp_path):
    ran = run_inprocess(tmp_path, restart_runbook(held, 4),
                        inventories=[service_kubernetes["inventory"]])
    assert ran.status == "failed"
    message = ran.end("restart").data["message"]
    assert message.startswith(f"Deployment {NS}/{held}: not done after 4s: ")
    assert "of 3 new replicas updated" in message
    # maxSurge 0: one old pod went, its replacement is held unready
    status = kube_api.api("GET", f"{DEPLOYMENTS}/{held}")["status"]
    assert (status["replicas"], status.get("updatedReplicas"), status.get("readyReplicas")) == (3, 1, 2)

    # the held pods become ready one batch at a time: then the rollout finishes
    wait = f"""
name: rollout status
steps:
  - {{id: wait, target: lab_cluster,
     kubernetes.wait: {{kind: Deployment, namespace: {NS}, name: {held}, for: rollout, timeout: 60}}}}
"""
    (tmp_path / "wait").mkdir()
    import threading

    stop = threading.Event()

    def kubelet() -> None:
        while not stop.is_set():
            mark_pods_ready(kube_api, held)
            stop.wait(0.2)

    thread = threading.Thread(target=kubelet, daemon=True)
    thread.start()
    try:
        finished = run_inprocess(tmp_path / "wait", wait, inventories=[service_kubernetes["inventory"]])
    finally:
        stop.set()
        thread.join()
    assert finished.status == "completed", finished.handle.outcome.message
    assert "3/3 replicas updated and available" in finished.end("wait").data["message"]


@pytest.mark.parametrize("held", [("surge-one", 1, 0)], indirect=True)
def test_naive_readiness_passes_where_kubectls_rule_does_not(held, service_kubernetes, kube_api,
                                                             tmp_path):
    ran = run_inprocess(tmp_path, restart_runbook(held, 3),
                        inventories=[service_kubernetes["inventory"]])
    assert ran.status == "failed"
    obj = kube_api.api("GET", f"{DEPLOYMENTS}/{held}")
    # maxSurge 1: a fourth, new pod is held unready; the three old ones stay ready
    assert naive_ready(obj)
    assert (obj["status"]["replicas"], obj["status"]["updatedReplicas"]) == (4, 1)
    assert rollout_state(obj) == (False, "1 of 3 new replicas updated")
    assert ran.end("restart").data["message"].endswith("1 of 3 new replicas updated")


def test_a_progress_deadline_fails_the_wait_at_once(kube_api, service_kubernetes, tmp_path):
    if kube_api.get_or_none(f"/api/v1/namespaces/{NS}") is None:
        kube_api.api("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    body = deployment("deadline", 1, 0)
    body["spec"]["progressDeadlineSeconds"] = 1
    if kube_api.get_or_none(f"{DEPLOYMENTS}/deadline"):
        kube_api.api("DELETE", f"{DEPLOYMENTS}/deadline")
        wait_for(lambda: kube_api.get_or_none(f"{DEPLOYMENTS}/deadline") is None)
    kube_api.api("POST", DEPLOYMENTS, body)  # its pods stay unready: no progress
    text = f"""
name: rollout status
steps:
  - {{id: wait, target: lab_cluster,
     kubernetes.wait: {{kind: Deployment, namespace: {NS}, name: deadline, for: rollout, timeout: 120}}}}
"""
    started = time.monotonic()
    ran = run_inprocess(tmp_path, text, inventories=[service_kubernetes["inventory"]])
    assert ran.status == "failed"
    assert time.monotonic() - started < 60
    message = ran.end("wait").data["message"]
    assert "rollout failed: exceeded its progress deadline" in message, message
