"""Bad input against the real apiserver: each a clear step failure naming the object,
never a traceback, never the token — through the real command line."""
from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import yaml

from helpers.run import journal_lines, runbook_cli, write_runbook


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def token_of(kubeconfig: str) -> str:
    return re.search(r"^\s*token:\s*(\S+)", Path(kubeconfig).read_text(), re.M).group(1)


@pytest.fixture
def broken_inventory(kube_lab, tmp_path) -> Path:
    """Targets that cannot work, each in its own way."""
    kube = kube_lab["parts"]["kubernetes"]
    unreachable = tmp_path / "unreachable.kubeconfig"
    unreachable.write_text(re.sub(r"https://127\.0\.0\.1:\d+", f"https://127.0.0.1:{closed_port()}",
                                  Path(kube["kubeconfig"]).read_text()))
    garbage = tmp_path / "garbage.kubeconfig"
    garbage.write_text("apiVersion: v1\nclusters: [unclosed\n")
    inventory = {"secrets": {"k8s_token": {"env": "LAB_K8S_TOKEN"}}, "targets": {
        "unreachable": {"kubernetes": {"kubeconfig": str(unreachable), "context": "lab"}},
        "garbage": {"kubernetes": {"kubeconfig": str(garbage)}},
        "missing_file": {"kubernetes": {"kubeconfig": str(tmp_path / "nope.kubeconfig")}},
        "missing_context": {"kubernetes": {"kubeconfig": kube["kubeconfig"], "context": "prod"}},
        "misspelt": {"kubernetes": {"kubeconfg": kube["kubeconfig"]}},
        "viewer": {"kubernetes": {"kubeconfig": kube["viewer_kubeconfig"], "context": "lab"}},
        # the viewer's kubeconfig, but the admin's token from the secrets: the token wins
        "by_token": {"kubernetes": {"kubeconfig": kube["viewer_kubeconfig"], "context": "lab",
                                    "token": "{{ secrets.k8s_token }}"}},
    }}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(inventory))
    return path


STEPS = """
name: every way to fail
steps:
  - {id: unreachable, target: unreachable, ignore_errors: true,
     kubernetes.get: {kind: Deployment, namespace: production, name: backend-api}}
  - {id: garbage, target: garbage, ignore_errors: true,
     kubernetes.get: {kind: Deployment, namespace: production, name: backend-api}}
  - {id: missing-file, target: missing_file, ignore_errors: true,
     kubernetes.get: {kind: Deployment, namespace: production, name: backend-api}}
  - {id: missing-context, target: missing_context, ignore_errors: true,
     kubernetes.get: {kind: Deployment, namespace: production, name: backend-api}}
  - {id: misspelt, target: misspelt, ignore_errors: true,
     kubernetes.get: {kind: Deployment, namespace: production, name: backend-api}}
  - {id: forbidden-patch, target: viewer, ignore_errors: true,
     kubernetes.scale: {kind: Deployment, namespace: production, name: backend-api, replicas: 5}}
  - {id: forbidden-namespace, target: viewer, ignore_errors: true,
     kubernetes.get: {kind: Deployment, namespace: disaster-recovery, name: backend-api}}
  - {id: viewer-reads, target: viewer,
     kubernetes.get: {kind: Deployment, namespace: production, name: backend-api}}
  - {id: stale, target: by_token, ignore_errors: true,
     kubernetes.patch: {kind: ConfigMap, namespace: production, name: backend-config, type: merge,
                        patch: {metadata: {resourceVersion: "1"}, data: {DATABASE_HOST: x}}}}
  - {id: token-reads, target: by_token,
     kubernetes.get: {kind: Deployment, namespace: disaster-recovery, name: backend-api}}
  - {id: unknown-version, target: by_token, ignore_errors: true,
     kubernetes.get: {api_version: apps/v9, kind: Deployment, namespace: production, name: backend-api}}
  - {id: missing-object, target: by_token, ignore_errors: true,
     kubernetes.get: {kind: Deployment, namespace: production, name: backend-apx}}
"""

OBJECT = r"^Deployment production/backend-api: "
EXPECTED = {
    "unreachable": OBJECT + r"cannot reach the Kubernetes API at https://127\.0\.0\.1:\d+: "
                            r"connection refused$",
    "garbage": OBJECT + r"kubeconfig \S+garbage\.kubeconfig cannot be used: ",
    "missing-file": OBJECT + r"kubeconfig \S+nope\.kubeconfig: Invalid kube-config file",
    "missing-context": OBJECT + r"kubeconfig \S+kubeconfig: .*name prod",
    "misspelt": OBJECT + r"target 'misspelt': unknown kubernetes setting\(s\) kubeconfg \(known: "
                         r"kubeconfig, context, token, namespace\)$",
    "forbidden-patch": r'^patch Deployment production/backend-api \(scale\): deployments.apps '
                       r'"backend-api" is forbidden: User "lab-viewer" cannot patch resource '
                       r'"deployments/scale" .* \(HTTP 403 Forbidden\)$',
    "forbidden-namespace": r'^get Deployment disaster-recovery/backend-api: .*User "lab-viewer" '
                           r'cannot get resource "deployments" .*"disaster-recovery" \(HTTP 403 Forbidden\)$',
    "stale": r"^patch ConfigMap production/backend-config: Operation cannot be fulfilled on "
             r'configmaps "backend-config": the object has been modified; please apply your '
             r"changes to the latest version and try again \(HTTP 409 Conflict\)$",
    "unknown-version": OBJECT + r"unknown kind Deployment in apps/v9: https://127\.0\.0\.1:\d+ "
                                r"serves it as apps/v1$",
    "missing-object": r'^get Deployment production/backend-apx: deployments.apps "backend-apx" not '
                      r"found \(HTTP 404 Not Found\)$",
}


@pytest.fixture
def failed_run(kube_lab, broken_inventory, tmp_path):
    admin_token = token_of(kube_lab["parts"]["kubernetes"]["kubeconfig"])
    write_runbook(tmp_path, STEPS)
    cli = runbook_cli("run", "runbook.yaml", "-i", broken_inventory, "--output", "json",
                      cwd=tmp_path, env={"LAB_K8S_TOKEN": admin_token}, timeout=180)
    return cli, admin_token


def test_every_failure_is_one_clear_line_naming_the_object(failed_run):
    cli, _ = failed_run
    assert cli.rc == 0, cli.output  # every failing step ignores its error; the others pass
    ended = {e["step"]["id"]: e["data"] for e in cli.events()
             if e["type"] in ("step.failed", "step.succeeded")}
    for step, pattern in EXPECTED.items():
        message = ended[step]["message"]
        assert "\n" not in message and re.search(pattern, message), (step, message)
    assert ended["viewer-reads"]["value"]["exists"] is True
    assert ended["token-reads"]["value"]["exists"] is True  # the admin's token from secrets


def test_no_traceback_and_no_token_anywhere(failed_run, kube_lab, tmp_path):
    cli, admin_token = failed_run
    viewer_token = token_of(kube_lab["parts"]["kubernetes"]["viewer_kubeconfig"])
    journal = "\n".join(str(line) for line in journal_lines(tmp_path / ".runbook"))
    assert journal  # the run was journaled where we look
    for text in (cli.output, journal):
        assert "Traceback" not in text
        assert admin_token not in text and viewer_token not in text


def test_a_dry_run_reports_unreachable_and_forbidden_as_findings(broken_inventory, kube_lab,
                                                                 tmp_path):
    write_runbook(tmp_path, """
name: rehearse against what cannot work
steps:
  - {id: scale, target: viewer,
     kubernetes.scale: {kind: Deployment, namespace: production, name: backend-api, replicas: 5}}
  - {id: patch, target: unreachable,
     kubernetes.patch: {kind: ConfigMap, namespace: production, name: backend-config,
                        patch: {data: {DATABASE_HOST: postgres-cluster-2}}}}
""")
    cli = runbook_cli("run", "runbook.yaml", "-i", broken_inventory, "--dry-run", "--strict",
                      cwd=tmp_path, env={"LAB_K8S_TOKEN": "unused"}, timeout=120)
    assert cli.rc == 1, cli.output
    assert "Findings (2):" in cli.stdout
    assert "(HTTP 403 Forbidden)" in cli.stdout and "connection refused" in cli.stdout
    assert "Traceback" not in cli.output
