"""The pure parts of the kubernetes family: diffs, revert patches, dropped fields, Secret
masking and kubectl's rollout rule, on hand-made objects."""
from __future__ import annotations

import copy

import pytest

from engine.actions.kubernetes.diff import (changes, describe, dropped_paths, revert_patch,
                                            without_secrets)
from engine.actions.kubernetes.refs import ObjectRef, canonical_kind, resource_keys
from engine.actions.kubernetes.rollout import RolloutFailed, condition_state, rollout_state


def merge(target, patch):
    """RFC 7386 JSON merge patch, to check that revert_patch really reverts."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


LIVE = {"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "backend-config", "namespace": "production", "resourceVersion": "10",
                     "managedFields": [{"manager": "x"}], "creationTimestamp": "2024-01-01T00:00:00Z"},
        "data": {"DATABASE_HOST": "postgres-cluster-1", "DATABASE_PORT": "5432"}}


def test_changes_ignore_what_every_write_changes():
    after = copy.deepcopy(LIVE)
    after["metadata"].update(resourceVersion="11", managedFields=[{"manager": "runbook"}])
    assert changes(LIVE, after) == []


def test_changes_name_each_path_with_before_and_after():
    after = copy.deepcopy(LIVE)
    after["data"]["DATABASE_HOST"] = "postgres-cluster-2"
    after["data"]["NEW"] = "1"
    found = changes(LIVE, after)
    assert describe(found) == ("data.DATABASE_HOST postgres-cluster-1 → postgres-cluster-2; "
                               "data.NEW (none) → 1")


def test_keys_with_dots_are_bracketed_and_long_lists_are_cut():
    before = {"metadata": {"annotations": {}}, "spec": {"a": 1, "b": 1, "c": 1, "d": 1}}
    after = {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}},
             "spec": {"a": 2, "b": 2, "c": 2, "d": 2}}
    text = describe(changes(before, after))
    assert text.startswith("metadata.annotations[kubectl.kubernetes.io/restartedAt] (none) → now")
    assert text.endswith("(and 2 more)")


def test_revert_patch_takes_the_object_back():
    after = copy.deepcopy(LIVE)
    after["data"]["DATABASE_HOST"] = "postgres-cluster-2"
    after["data"]["NEW"] = "1"
    del after["data"]["DATABASE_PORT"]
    patch = revert_patch(LIVE, after)
    assert patch == {"data": {"DATABASE_HOST": "postgres-cluster-1", "NEW": None,
                              "DATABASE_PORT": "5432"}}
    assert merge(after, patch)["data"] == LIVE["data"]


@pytest.mark.parametrize("patch, dropped", [
    ({"spec": {"replicaz": 3}}, ["spec.replicaz"]),
    ({"spec": {"replicas": 3}}, []),
    ({"spec": {"paused": False}}, []),  # zero values are omitted from the answer
    ({"spec": {"template": {"metadata": {"annotations": {"a.b/c": "x"}}}}}, []),
    ({"metadata": {"labels": {"$patch": "replace", "app": "x"}}}, []),
    ({"stringData": {"password": "x"}}, []),  # becomes data
])
def test_dropped_paths(patch, dropped):
    answer = {"metadata": {"labels": {"app": "x"}}, "data": {"password": "eA=="},
              "spec": {"replicas": 3, "template": {"metadata": {"annotations": {"a.b/c": "x"}}}}}
    assert dropped_paths(patch, answer) == dropped


def test_secrets_are_masked_keys_kept():
    secret = {"apiVersion": "v1", "kind": "Secret", "data": {"password": "c2VjcmV0"},
              "metadata": {"annotations": {
                  "kubectl.kubernetes.io/last-applied-configuration": '{"data": "c2VjcmV0"}'}}}
    masked = without_secrets(secret)
    assert masked["data"] == {"password": "***"}
    assert "c2VjcmV0" not in str(masked)
    assert without_secrets(LIVE) is LIVE


def deployment(generation=2, observed=2, wanted=3, replicas=3, updated=3, available=3,
               conditions=()):
    return {"kind": "Deployment", "metadata": {"generation": generation},
            "spec": {"replicas": wanted},
            "status": {"observedGeneration": observed, "replicas": replicas,
                       "updatedReplicas": updated, "availableReplicas": available,
                       "readyReplicas": available, "conditions": list(conditions)}}


@pytest.mark.parametrize("obj, done, waiting", [
    (deployment(observed=1), False, "waiting for the deployment controller to observe the change"),
    (deployment(updated=1, replicas=4), False, "1 of 3 new replicas updated"),
    (deployment(replicas=4), False, "1 old replicas pending termination"),
    (deployment(available=2), False, "2 of 3 updated replicas available"),
    (deployment(), True, "3/3 replicas updated and available"),
])
def test_kubectls_rollout_rule_for_deployments(obj, done, waiting):
    assert rollout_state(obj) == (done, waiting)


def test_the_rule_is_judged_on_the_generation_the_change_returned():
    assert rollout_state(deployment(generation=2, observed=2), min_generation=3)[0] is False


def test_a_progress_deadline_fails_at_once():
    stuck = deployment(updated=1, conditions=[{"type": "Progressing", "status": "False",
                                               "reason": "ProgressDeadlineExceeded",
                                               "message": "ReplicaSet x has timed out progressing."}])
    with pytest.raises(RolloutFailed, match="timed out progressing"):
        rollout_state(stuck)


def test_statefulset_and_daemonset_rules():
    sts = {"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {"replicas": 2},
           "status": {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 1,
                      "currentRevision": "a", "updateRevision": "b"}}
    assert rollout_state(sts) == (False, "1 of 2 pods updated")
    sts["status"]["currentRevision"] = "b"
    assert rollout_state(sts)[0] is True
    on_delete = copy.deepcopy(sts)
    on_delete["spec"]["updateStrategy"] = {"type": "OnDelete"}
    with pytest.raises(RolloutFailed):
        rollout_state(on_delete)
    ds = {"kind": "DaemonSet", "metadata": {"generation": 1}, "spec": {},
          "status": {"observedGeneration": 1, "desiredNumberScheduled": 0}}
    assert rollout_state(ds)[0] is True  # no nodes, nothing to roll out


def test_conditions():
    obj = {"status": {"conditions": [{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]}}
    assert condition_state(obj, {"type": "Available"}) == \
        (False, "Available is False (MinimumReplicasUnavailable)")
    assert condition_state(obj, {"type": "Available", "status": "False"})[0] is True
    assert condition_state(obj, {"type": "Ready"}) == (False, "no Ready condition yet")


def test_resource_keys_and_kind_aliases():
    assert canonical_kind("deploy") == canonical_kind("deployments") == "Deployment"
    assert canonical_kind("Cluster") == "Cluster"
    ref = ObjectRef(kind="cm", name="backend-config", namespace="production")
    assert resource_keys("prod", ref) == {"k8s:prod/production/ConfigMap/backend-config"}
    pods = resource_keys("prod", ObjectRef(kind="Pod", namespace="production", label_selector="a=b"))
    assert "k8s:prod/production/Pod/*" in pods and "k8s:prod/production/Deployment/*" in pods
