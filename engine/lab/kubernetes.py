"""The lab part ``kubernetes``: a real control plane with the seed's world.

``runbook lab up --with kubernetes`` builds (once per machine, 5-25 minutes, with
progress lines) or reuses kube-apiserver and kube-controller-manager v1.20.2
(``engine.lab.kube_build``), starts etcd, the apiserver, the controller manager and
the kubelet stand-in (``engine.lab.kube_cluster``), creates the seed's objects
(``engine.lab.kube_seed``) and starts the lab operators (``engine.lab.kube_operators``:
CloudNativePG promotes the lab's real PostgreSQL replica, Argo CD completes syncs).

The cluster lives in ``RUNTIME_DIR/kubernetes`` (kubeconfigs, certs, logs, pids);
etcd's data on tmpfs. The inventory gets the targets ``lab_cluster``,
``prod_cluster`` and ``dr_cluster`` (the same cluster: the seed's procedures switch
between a production and a DR context) and ``lab_cluster_viewer`` (a user that may
only read ``production``), each ``kubernetes: {kubeconfig, context: lab}``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from engine.errors import LabError
from engine.lab.kube_api import KubeApi, KubeApiError, KubeClusterError
from engine.lab.kube_pids import is_ours, read_pids, spawn_process

__all__ = ["up", "down", "status", "inventory", "CLUSTER_TARGETS"]

CLUSTER_TARGETS = ("lab_cluster", "prod_cluster", "dr_cluster")
OPERATORS = "kube-operators"


def _workdir(runtime_dir: Path) -> Path:
    return Path(runtime_dir) / "kubernetes"


def up(lab) -> dict:
    """Build or reuse the binaries, start the cluster, seed it, start the operators."""
    from engine.lab.kube_build import KubeBuildError, ensure_binaries, ensure_runtime_packages
    from engine.lab.kube_cluster import start_cluster
    from engine.lab.kube_seed import seed_world

    workdir = _workdir(lab.runtime_dir)
    state = {"workdir": str(workdir)}
    lab.save(state)  # first: a crash from here on leaves something `down` can find
    try:
        ensure_runtime_packages(lab.progress)
        bin_dir = ensure_binaries(progress=lab.progress)
        info = start_cluster(workdir, bin_dir, progress=lab.progress)
        state.update(server=info.server, kubeconfig=str(info.kubeconfig),
                     viewer_kubeconfig=str(info.viewer_kubeconfig), bin_dir=str(bin_dir))
        lab.save(state)
        lab.progress("kubernetes: creating the seed objects")
        state["seed"] = seed_world(KubeApi.from_kubeconfig(info.kubeconfig), Path(lab.lab_dir))
        spawn_process(workdir, OPERATORS, [sys.executable, "-m", "engine.lab.kube_operators",
                                           "--kubeconfig", str(info.kubeconfig)])
    except (KubeBuildError, KubeClusterError, KubeApiError, OSError) as exc:
        raise LabError(f"kubernetes: {exc}") from None
    lab.save(state)
    return state


def down(lab, state: dict | None) -> list[str]:
    """Stop every process of the cluster (recorded or left behind in the runtime dir)."""
    from engine.lab.kube_cluster import stop_cluster

    workdir = Path(state["workdir"]) if state and state.get("workdir") else \
        _workdir(lab.runtime_dir)
    if not workdir.exists():
        return []
    running = any(is_ours(entry) for entry in read_pids(workdir).values())
    stop_cluster(workdir)
    return ["kubernetes"] if running else []


def status(state: dict) -> dict[str, dict]:
    """One line for ``runbook lab status``: the apiserver, and which processes run."""
    from engine.lab.kube_cluster import cluster_status

    workdir = Path(state.get("workdir", ""))
    found = cluster_status(workdir)
    processes = found["processes"]
    apiserver = processes.get("kube-apiserver") or {}
    down_names = [name for name, p in processes.items() if not p["alive"]]
    ready = found["readyz"] == "ok"
    detail = f"{found['server']} readyz {found['readyz']}" + \
        (f"; not running: {', '.join(down_names)}" if down_names else "; all processes running")
    return {"kubernetes": {"running": bool(processes) and ready and not down_names,
                           "pid": apiserver.get("pid"), "port": _port(state.get("server")),
                           "detail": detail}}


def _port(server: str | None) -> int | None:
    try:
        return int(str(server).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def inventory(state: dict) -> dict:
    """The cluster targets, and ``kubeconfig`` in vars for scripts and kubectl."""
    if not state.get("kubeconfig"):
        return {}
    targets = {name: {"kubernetes": {"kubeconfig": state["kubeconfig"], "context": "lab"}}
               for name in CLUSTER_TARGETS}
    targets["lab_cluster_viewer"] = {
        "kubernetes": {"kubeconfig": state["viewer_kubeconfig"], "context": "lab"}}
    return {"vars": {"kubeconfig": state["kubeconfig"]}, "targets": targets}
