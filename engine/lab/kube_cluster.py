"""A real Kubernetes v1.20 control plane on loopback, for tests and the lab.

``start_cluster`` runs etcd (data on tmpfs), kube-apiserver (HTTPS on
127.0.0.1, static tokens, RBAC), kube-controller-manager (deployment,
replicaset, garbagecollector, statefulset, namespace controllers) and the
kubelet stand-in (``engine.lab.kube_kubelet``) that marks every pod Running
and Ready, so the real controllers report ``readyReplicas`` and complete
rolling restarts. There is no scheduler and no container runtime: nothing
runs in the pods.

Two users: ``lab-admin`` (group ``system:masters``, in ``kubeconfig``) and
``lab-viewer`` (no rights until a binding grants some, in
``kubeconfig-viewer``), so a forbidden request can be shown for real.

Everything lives in one work directory: ``kubeconfig`` (context ``lab``),
``cluster.json`` (server, etcd dir), ``pids.json`` and one ``*.log`` per
process. Every process has its own session, so ``stop_cluster`` can end each
process group, even after the starting Python process has gone; more
processes (the lab's operators) join through ``spawn_process``.

Stdlib only::

    python -m engine.lab.kube_cluster up --workdir DIR [--bin-dir DIR]
    python -m engine.lab.kube_cluster status --workdir DIR
    python -m engine.lab.kube_cluster down --workdir DIR
    python -m engine.lab.kube_cluster kubelet --workdir DIR   # what `up` starts
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from engine.lab.kube_api import KubeApi, KubeApiError, KubeClusterError
from engine.lab.kube_pids import (alive, is_ours, log_tail, read_json, read_pids, spawn_process,
                                   terminate_groups, write_json, write_private)

__all__ = ["ClusterInfo", "start_cluster", "stop_cluster", "cluster_status", "spawn_process",
           "remove_stale_etcd_dirs", "KubeClusterError", "KubeApiError", "KubeApi"]

Progress = Callable[[str], None]

TMPFS = Path("/dev/shm")
ETCD_DIR_PREFIX = "runbook-kube-etcd-"
SERVICE_CIDR = "10.0.0.0/24"  # only an address plan; no traffic goes there
CONTROLLERS = "deployment,replicaset,garbagecollector,statefulset,namespace"
# ServiceAccount admission would refuse pods until a token controller had
# minted secrets; nothing in the lab needs pod credentials.
DISABLED_ADMISSION = "ServiceAccount"
# apiserver start-up is CPU-bound: 4-5 s idle, 7-15 s on a busy 2-core machine
READY_TIMEOUT = 90.0


# --------------------------------------------------------------------------
# Starting the cluster
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class ClusterInfo:
    """A running cluster. ``kubeconfig`` works with kubectl and the
    ``kubernetes`` client (context ``lab``); ``pids`` maps process name to pid."""

    workdir: Path
    server: str
    token: str
    kubeconfig: Path
    pids: dict[str, int] = field(default_factory=dict)
    ca_verified: bool = False
    #: the same cluster as ``lab-viewer``, a user with no rights until bound to a role
    viewer_kubeconfig: Path | None = None

    def client(self) -> KubeApi:
        return KubeApi.from_kubeconfig(self.kubeconfig)


def start_cluster(workdir: Path, bin_dir: Path, progress: Progress = print) -> ClusterInfo:
    """Start etcd, kube-apiserver, kube-controller-manager and the kubelet
    stand-in; return once the apiserver's /readyz and the controller
    manager's /healthz answer ok.

    ``bin_dir`` holds kube-apiserver and kube-controller-manager (see
    kube_build.ensure_binaries); ``etcd`` and ``openssl`` must be on PATH.
    A cluster already recorded in ``workdir`` is stopped first. On failure
    everything started is stopped and KubeClusterError is raised.
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    stop_cluster(workdir)
    starter = _Starter(workdir, Path(bin_dir), progress)
    try:
        return starter.run()
    except BaseException:
        stop_cluster(workdir)
        raise


class _Starter:
    """One start attempt; records each process in pids.json as it starts."""

    def __init__(self, workdir: Path, bin_dir: Path, progress: Progress) -> None:
        self.workdir = workdir
        self.bin_dir = bin_dir
        self.progress = progress
        self.begin = time.monotonic()
        self.token = secrets.token_urlsafe(32)
        self.viewer_token = secrets.token_urlsafe(32)
        self.etcd_port, self.peer_port, self.api_port, self.cm_port = _free_ports(4)
        self.server = f"https://127.0.0.1:{self.api_port}"

    def say(self, message: str) -> None:
        self.progress(f"[kube-cluster {time.monotonic() - self.begin:5.1f}s] {message}")

    def run(self) -> ClusterInfo:
        for tool in ("etcd", "openssl"):
            if not shutil.which(tool):
                raise KubeClusterError(f"{tool} not found on PATH (apt-get install etcd-server / openssl)")
        for binary in ("kube-apiserver", "kube-controller-manager"):
            if not os.access(self.bin_dir / binary, os.X_OK):
                raise KubeClusterError(f"no executable {binary} in {self.bin_dir} (see kube_build.ensure_binaries)")
        self.start_etcd()
        self.write_secrets()  # while etcd elects itself
        self.wait("etcd", lambda: _http_ok(f"http://127.0.0.1:{self.etcd_port}/health", '"health":"true"'))
        self.start_apiserver()
        verified = self.write_kubeconfig()
        self.start_controller_manager()
        self.start_kubelet()
        self.say(f"ready: {self.server}")
        return ClusterInfo(
            workdir=self.workdir,
            server=self.server,
            token=self.token,
            kubeconfig=self.workdir / "kubeconfig",
            viewer_kubeconfig=self.workdir / "kubeconfig-viewer",
            pids={name: entry["pid"] for name, entry in read_pids(self.workdir).items()},
            ca_verified=verified,
        )

    def start_etcd(self) -> None:
        etcd_dir = Path(tempfile.mkdtemp(prefix=ETCD_DIR_PREFIX, dir=TMPFS))
        (etcd_dir / "owner").write_text(str(self.workdir))
        write_json(self.workdir / "cluster.json", {"etcd_dir": str(etcd_dir)})
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.spawn("etcd", [
            "etcd", "--name", "lab", "--data-dir", str(etcd_dir / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"lab={peer}", "--logger", "zap",
            # One member on loopback: elect it in ~0.1 s instead of ~1 s.
            "--heartbeat-interval", "10", "--election-timeout", "100",
        ])

    def write_secrets(self) -> None:
        """The static token file and the service-account signing key."""
        secrets_dir = self.workdir / "secrets"
        secrets_dir.mkdir(mode=0o700, exist_ok=True)
        token_file = secrets_dir / "tokens.csv"
        write_private(token_file, f'{self.token},lab-admin,lab-admin,"system:masters"\n'
                                   f'{self.viewer_token},lab-viewer,lab-viewer\n')
        _generate_rsa_key(secrets_dir / "service-account.key")

    def start_apiserver(self) -> None:
        token_file = self.workdir / "secrets/tokens.csv"
        sa_key = self.workdir / "secrets/service-account.key"
        self.spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.api_port}", "--insecure-port=0",
            f"--cert-dir={self.workdir / 'certs'}",
            f"--token-auth-file={token_file}", "--authorization-mode=RBAC",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--disable-admission-plugins={DISABLED_ADMISSION}",
            # The "kubernetes" Service cannot have a loopback endpoint; the
            # reconciler would log an error every 10 s.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ])
        probe = KubeApi(self.server, self.token, timeout=2)
        self.wait("kube-apiserver", lambda: _api_ok(probe, "/readyz"))

    def write_kubeconfig(self) -> bool:
        """Write kubeconfig and cluster.json; return True when the apiserver's
        self-generated certificate verifies for 127.0.0.1 and is embedded."""
        ca_pem = (self.workdir / "certs/apiserver.crt").read_text()
        verified = _api_ok(KubeApi(self.server, self.token, ca_pem, timeout=5), "/readyz")
        if not verified:
            self.say("apiserver certificate does not verify; kubeconfig skips TLS verification")
        path = self.workdir / "kubeconfig"
        trusted = ca_pem if verified else None
        write_private(path, _kubeconfig_text(self.server, self.token, trusted))
        write_private(self.workdir / "kubeconfig-viewer",
                       _kubeconfig_text(self.server, self.viewer_token, trusted))
        state = read_json(self.workdir / "cluster.json")
        state.update(server=self.server, token=self.token, kubeconfig=str(path))
        write_json(self.workdir / "cluster.json", state)
        return verified

    def start_controller_manager(self) -> None:
        kubeconfig = self.workdir / "kubeconfig"
        self.spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--controllers={CONTROLLERS}",
            "--leader-elect=false", "--port=0",
            "--bind-address=127.0.0.1", f"--secure-port={self.cm_port}",
            f"--cert-dir={self.workdir / 'certs-cm'}",
            "--profiling=false",
        ])
        url = f"https://127.0.0.1:{self.cm_port}/healthz"
        self.wait("kube-controller-manager", lambda: _http_ok(url, "ok", verify=False))

    def start_kubelet(self) -> None:
        self.spawn("kubelet", [sys.executable, "-m", "engine.lab.kube_cluster", "kubelet",
                               "--workdir", str(self.workdir)])

    def spawn(self, name: str, argv: list[str]) -> None:
        self.say(f"starting {name}")
        spawn_process(self.workdir, name, argv)

    def wait(self, name: str, probe: Callable[[], bool]) -> None:
        """Poll ``probe`` until true; fail fast if the process died."""
        pid = read_pids(self.workdir)[name]["pid"]
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if probe():
                self.say(f"{name} ready")
                return
            if not alive(pid):
                raise KubeClusterError(f"{name} exited during start: {log_tail(self.workdir, name)}")
            time.sleep(0.1)
        raise KubeClusterError(f"{name} not ready after {READY_TIMEOUT:.0f}s: {log_tail(self.workdir, name)}")


def _kubeconfig_text(server: str, token: str, ca_pem: str | None) -> str:
    if ca_pem:
        trust = "certificate-authority-data: " + base64.b64encode(ca_pem.encode()).decode()
    else:
        trust = "insecure-skip-tls-verify: true"
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: lab\n  cluster:\n    server: {server}\n    {trust}\n"
        f"users:\n- name: lab\n  user:\n    token: {token}\n"
        "contexts:\n- name: lab\n  context:\n    cluster: lab\n    user: lab\n"
        "current-context: lab\n"
    )


def _generate_rsa_key(path: Path) -> None:
    done = subprocess.run(
        ["openssl", "genrsa", "-out", str(path), "2048"], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise KubeClusterError(f"openssl genrsa failed: {done.stderr.strip()[-300:]}")
    path.chmod(0o600)


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open together while chosen)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _http_ok(url: str, expect: str, verify: bool = True) -> bool:
    context = None if verify else ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            return expect in resp.read().decode(errors="replace")
    except (OSError, ValueError):
        return False


def _api_ok(client: KubeApi, path: str) -> bool:
    try:
        return client.api("GET", path) == "ok"
    except (OSError, KubeApiError, ValueError):
        return False


# --------------------------------------------------------------------------
# Stopping and status
# --------------------------------------------------------------------------


def stop_cluster(workdir: Path) -> None:
    """Stop every process recorded in ``workdir/pids.json`` (SIGTERM to its
    process group, SIGKILL after 3 s) and remove the tmpfs etcd data.
    Idempotent; also removes etcd dirs on tmpfs left by dead clusters."""
    workdir = Path(workdir)
    entries = {name: e for name, e in read_pids(workdir).items() if is_ours(e)}
    # etcd goes last: an apiserver that loses etcd first retries instead of
    # exiting, and would only end with SIGKILL.
    terminate_groups([e["pid"] for name, e in entries.items() if name != "etcd"])
    terminate_groups([e["pid"] for name, e in entries.items() if name == "etcd"])
    etcd_dir = read_json(workdir / "cluster.json").get("etcd_dir")
    if etcd_dir and Path(etcd_dir).parent == TMPFS:
        shutil.rmtree(etcd_dir, ignore_errors=True)
    (workdir / "pids.json").unlink(missing_ok=True)
    remove_stale_etcd_dirs()


def remove_stale_etcd_dirs() -> list[Path]:
    """Remove tmpfs etcd dirs whose owning work dir has no live pids.json."""
    removed = []
    for etcd_dir in TMPFS.glob(ETCD_DIR_PREFIX + "*"):
        owner = etcd_dir / "owner"
        try:
            # A cluster still starting has not recorded its etcd pid yet.
            if time.time() - owner.stat().st_mtime < 2 * READY_TIMEOUT:
                continue
            workdir = Path(owner.read_text())
        except OSError:
            workdir = None
        live = workdir and any(is_ours(e) for e in read_pids(workdir).values())
        if not live:
            shutil.rmtree(etcd_dir, ignore_errors=True)
            removed.append(etcd_dir)
    return removed


def cluster_status(workdir: Path) -> dict:
    """``{"processes": {name: {"pid", "alive"}}, "server", "readyz"}``;
    ``readyz`` is "ok" or the error met asking for it."""
    workdir = Path(workdir)
    processes = {
        name: {"pid": entry["pid"], "alive": is_ours(entry)}
        for name, entry in read_pids(workdir).items()
    }
    status: dict[str, Any] = {"processes": processes, "server": None, "readyz": "no cluster"}
    if (workdir / "kubeconfig").exists() and processes:
        client = KubeApi.from_kubeconfig(workdir / "kubeconfig")
        status["server"] = client.server
        try:
            status["readyz"] = client.api("GET", "/readyz")
        except (OSError, KubeApiError, ValueError) as exc:
            status["readyz"] = f"error: {exc}"
    return status


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _default_bin_dir() -> Path:
    from engine.lab.kube_build import ensure_binaries

    return ensure_binaries()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.lab.kube_cluster", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "kubelet"])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--bin-dir", type=Path, help="dir with kube-apiserver (default: build/cache)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            info = start_cluster(args.workdir, args.bin_dir or _default_bin_dir())
            print(f"kubeconfig: {info.kubeconfig}")
        elif args.command == "down":
            stop_cluster(args.workdir)
        elif args.command == "status":
            print(json.dumps(cluster_status(args.workdir), indent=2))
        else:
            from engine.lab.kube_kubelet import run_kubelet

            run_kubelet(args.workdir.resolve() / "kubeconfig", log=lambda m: print(m, flush=True))
    except (RuntimeError, OSError) as exc:  # KubeClusterError, KubeBuildError
        print(f"kube-cluster: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
