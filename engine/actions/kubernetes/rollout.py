"""When is a rollout done? kubectl's rule (``kubectl rollout status``), per kind.

A naive ``readyReplicas == replicas`` is true the moment a restart is accepted —
the old pods are still ready — so a wait built on it returns before a single new
pod exists (Ansible's kubernetes.core reported a restart "ready" after 27 ms with
zero new pods; kubectl's rule after 503 ms). kubectl's rule for a Deployment:

- the controller has seen the change: ``observedGeneration >= generation`` (and at
  least the generation the change itself returned);
- ``updatedReplicas >= spec.replicas`` — every wanted pod is of the new template;
- ``replicas <= updatedReplicas`` — no old pod is left;
- ``availableReplicas >= updatedReplicas`` — every new pod is available;
- a ``Progressing`` condition with reason ``ProgressDeadlineExceeded`` fails at once.

Each function returns ``(done, what we are waiting for)`` or raises RolloutFailed.
"""
from __future__ import annotations

from typing import Callable

__all__ = ["RolloutFailed", "rollout_state", "ROLLOUT_KINDS", "condition_state"]


class RolloutFailed(Exception):
    """The rollout cannot finish (deadline exceeded, a strategy kubectl cannot watch)."""


def _deployment(obj: dict, generation: int) -> tuple[bool, str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if (status.get("observedGeneration") or 0) < generation:
        return False, "waiting for the deployment controller to observe the change"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and \
                condition.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutFailed(f"exceeded its progress deadline: {condition.get('message', '')}")
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas") or 0
    total, available = status.get("replicas") or 0, status.get("availableReplicas") or 0
    if updated < wanted:
        return False, f"{updated} of {wanted} new replicas updated"
    if total > updated:
        return False, f"{total - updated} old replicas pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, f"{updated}/{wanted} replicas updated and available"


def _statefulset(obj: dict, generation: int) -> tuple[bool, str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
    if strategy != "RollingUpdate":
        raise RolloutFailed(f"rollout status works only with the RollingUpdate strategy, not {strategy}")
    observed = status.get("observedGeneration") or 0
    if observed == 0 or observed < generation:
        return False, "waiting for the statefulset controller to observe the change"
    wanted, ready = spec.get("replicas", 1), status.get("readyReplicas") or 0
    if ready < wanted:
        return False, f"{ready} of {wanted} pods ready"
    partition = ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition")
    if partition:
        updated = status.get("updatedReplicas") or 0
        if updated < wanted - partition:
            return False, f"{updated} of {wanted - partition} pods updated (partition {partition})"
        return True, f"partitioned roll out complete: {updated} new pods"
    if status.get("updateRevision") != status.get("currentRevision"):
        return False, f"{status.get('updatedReplicas') or 0} of {wanted} pods updated"
    return True, f"{ready}/{wanted} pods ready at revision {status.get('currentRevision')}"


def _daemonset(obj: dict, generation: int) -> tuple[bool, str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    strategy = (spec.get("updateStrategy") or {}).get("type", "RollingUpdate")
    if strategy != "RollingUpdate":
        raise RolloutFailed(f"rollout status works only with the RollingUpdate strategy, not {strategy}")
    if (status.get("observedGeneration") or 0) < generation:
        return False, "waiting for the daemon set controller to observe the change"
    wanted = status.get("desiredNumberScheduled") or 0
    updated = status.get("updatedNumberScheduled") or 0
    available = status.get("numberAvailable") or 0
    if updated < wanted:
        return False, f"{updated} of {wanted} updated pods scheduled"
    if available < wanted:
        return False, f"{available} of {wanted} updated pods available"
    return True, f"{available}/{wanted} pods updated and available"


ROLLOUT_KINDS: dict[str, Callable[[dict, int], tuple[bool, str]]] = {
    "Deployment": _deployment, "StatefulSet": _statefulset, "DaemonSet": _daemonset}


def rollout_state(obj: dict, min_generation: int = 0) -> tuple[bool, str]:
    """(done, what we wait for) of a Deployment, StatefulSet or DaemonSet, judged on at
    least ``min_generation`` (what the change that started the rollout returned)."""
    judge = ROLLOUT_KINDS[obj.get("kind", "")]
    generation = max((obj.get("metadata") or {}).get("generation") or 0, min_generation)
    return judge(obj, generation)


def condition_state(obj: dict, wanted: dict) -> tuple[bool, str]:
    """Whether ``obj`` has the condition ``{type, status[, reason]}`` (status "True" by default)."""
    want_status = str(wanted.get("status", "True"))
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") != wanted["type"]:
            continue
        reason_ok = "reason" not in wanted or condition.get("reason") == wanted["reason"]
        if str(condition.get("status")) == want_status and reason_ok:
            return True, f"{wanted['type']} is {want_status}"
        return False, (f"{wanted['type']} is {condition.get('status')}"
                       f" ({condition.get('reason') or 'no reason'})")
    return False, f"no {wanted['type']} condition yet"
