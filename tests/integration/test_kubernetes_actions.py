"""The kubernetes.* actions as a family: registry, schemas, lazy import, one client per
target per run, rollbacks from `previous`, Secrets masked, resource keys."""
from __future__ import annotations

import subprocess
import sys

from helpers.run import run_inprocess

from engine.actions import get_action
from engine.actions.base import Context
from engine.actions.kubernetes import ACTIONS

READ_ONLY = {"kubernetes.get", "kubernetes.wait"}


def test_registry_resolves_every_verb_with_a_precise_schema():
    from jsonschema import Draft202012Validator

    assert set(ACTIONS) == {"kubernetes.get", "kubernetes.wait", "kubernetes.scale",
                            "kubernetes.rollout_restart", "kubernetes.patch", "kubernetes.apply",
                            "kubernetes.delete"}
    for name in ACTIONS:
        action = get_action(name)
        assert action.name == name and action.summary()
        Draft202012Validator.check_schema(action.args_schema)
        assert action.args_schema["additionalProperties"] is False
        assert action.mutates is (name not in READ_ONLY)


def test_importing_the_family_does_not_import_the_kubernetes_client():
    modules = ", ".join(f"engine.actions.kubernetes.{m}" for m in
                        ("read", "scale", "patch", "apply")) + ", engine.connections.kubernetes"
    code = (f"import sys, {modules}; "
            "sys.exit(1 if any(m == 'kubernetes' or m.startswith('kubernetes.') "
            "for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_one_client_per_target_per_run(kube_lab):
    from engine.actions.kubernetes.read import Get

    kube = kube_lab["parts"]["kubernetes"]
    ctx = Context()
    try:
        for target in ("lab_cluster", "prod_cluster", "lab_cluster"):
            settings = {"name": target, "kubernetes": {"kubeconfig": kube["kubeconfig"], "context": "lab"}}
            ctx.bind_step(None, None, target=settings)
            for name in ("backend-api", "frontend-app"):
                Get().run({"kind": "Deployment", "namespace": "production", "name": name}, ctx)
        assert len(ctx._connections) == 2  # lab_cluster and prod_cluster, each kept
    finally:
        ctx.close()


def test_touches_names_the_object_and_what_its_controller_changes():
    from engine.actions.kubernetes.read import Get
    from engine.actions.kubernetes.scale import Scale
    from engine.actions.resources import overlaps

    ctx = Context()
    ctx.bind_step(None, None, target={"name": "prod_cluster", "kubernetes": {}})
    scale = Scale().touches({"kind": "deploy", "namespace": "production", "name": "backend-api",
                             "replicas": 5}, ctx)
    assert scale == {"k8s:prod_cluster/production/Deployment/backend-api"}
    pods = Get().touches({"kind": "Pod", "namespace": "production", "label_selector": "app=x"}, ctx)
    other = Get().touches({"kind": "Deployment", "namespace": "production", "name": "frontend-app"},
                          ctx)
    assert any(overlaps(a, b) for a in pods for b in scale)
    assert not any(overlaps(a, b) for a in other for b in scale)


ROLLBACK = """
name: change then fail
on_failure: rollback
steps:
  - id: scale
    target: lab_cluster
    kubernetes.scale: {kind: Deployment, namespace: cases, name: rollback-me, replicas: 4}
    rollback:
      - target: lab_cluster
        kubernetes.scale: {kind: Deployment, namespace: cases, name: rollback-me,
                           replicas: "{{ result.previous }}"}
  - id: repoint
    target: lab_cluster
    kubernetes.patch: {kind: ConfigMap, namespace: cases, name: rollback-config,
                       patch: {data: {DATABASE_HOST: postgres-cluster-2, NEW_KEY: "1"}}}
    rollback:
      - target: lab_cluster
        kubernetes.patch: {kind: ConfigMap, namespace: cases, name: rollback-config, type: merge,
                           patch: "{{ result.previous }}"}
  - fail: {message: the new primary does not answer}
"""
ROLLBACK_SETUP = """
name: set up
steps:
  - target: lab_cluster
    kubernetes.apply:
      force: true
      manifest:
        - {apiVersion: v1, kind: Namespace, metadata: {name: cases}}
        - apiVersion: apps/v1
          kind: Deployment
          metadata: {name: rollback-me, namespace: cases}
          spec:
            replicas: 2
            selector: {matchLabels: {app: rollback-me}}
            template:
              metadata: {labels: {app: rollback-me}}
              spec: {containers: [{name: app, image: registry.example.com/app:1}]}
        - {apiVersion: v1, kind: ConfigMap, metadata: {name: rollback-config, namespace: cases},
           data: {DATABASE_HOST: postgres-cluster-1}}
"""


def test_previous_undoes_scale_and_patch_in_a_rollback(service_kubernetes, kube_api, tmp_path):
    inventory = [service_kubernetes["inventory"]]
    for name in ("setup", "run"):
        (tmp_path / name).mkdir()
    assert run_inprocess(tmp_path / "setup", ROLLBACK_SETUP, inventories=inventory).status == "completed"
    ran = run_inprocess(tmp_path / "run", ROLLBACK, inventories=inventory)
    assert ran.status == "failed"
    assert kube_api.api("GET", "/apis/apps/v1/namespaces/cases/deployments/rollback-me")["spec"]["replicas"] == 2
    config = kube_api.api("GET", "/api/v1/namespaces/cases/configmaps/rollback-config")
    assert config["data"] == {"DATABASE_HOST": "postgres-cluster-1"}  # NEW_KEY removed again


OLD, NEW = "old-value-1234", "s3cr3t-DB-passw0rd"
SECRETS_RUNBOOK = """
name: secrets
steps:
  - target: lab_cluster
    kubernetes.apply:
      force: true
      manifest:
        - {apiVersion: v1, kind: Namespace, metadata: {name: cases}}
        - {apiVersion: v1, kind: Secret, metadata: {name: db, namespace: cases},
           stringData: {password: "{{ secrets.old_password }}"}}
  - id: read
    target: lab_cluster
    kubernetes.get: {kind: Secret, namespace: cases, name: db}
  - id: change
    target: lab_cluster
    kubernetes.patch: {kind: Secret, namespace: cases, name: db,
                       patch: {stringData: {password: "{{ secrets.new_password }}"}}}
"""


def test_secret_values_never_reach_results_plans_or_the_journal(service_kubernetes, tmp_path):
    import base64
    import json

    import yaml

    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(yaml.safe_dump({"secrets": {"old_password": {"value": OLD},
                                                   "new_password": {"value": NEW}}}))
    inventory = [service_kubernetes["inventory"], secrets]
    (tmp_path / "dry").mkdir()
    (tmp_path / "real").mkdir()
    dry = run_inprocess(tmp_path / "dry", SECRETS_RUNBOOK, inventories=inventory, dry_run=True)
    ran = run_inprocess(tmp_path / "real", SECRETS_RUNBOOK, inventories=inventory)
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.value("read")["object"]["data"] == {"password": "***"}
    assert ran.end("change").data["message"] == "patched Secret cases/db: data.password (changed)"
    for events in (dry.events, ran.events):
        dumped = json.dumps([e.data for e in events], default=str)
        for value in (OLD, NEW):
            assert value not in dumped
            assert base64.b64encode(value.encode()).decode() not in dumped
