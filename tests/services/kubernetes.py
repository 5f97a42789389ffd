"""The Kubernetes lab as test fixtures: one real control plane per session.

Loaded for every test as a pytest plugin (``tests/conftest.py``).

``kube_lab`` starts a lab with the ``kubernetes`` part (PostgreSQL primary + replica,
the app, kube-apiserver + etcd + kube-controller-manager, the kubelet stand-in, the
seed objects and the lab operators) once per session — 10-25 s on a busy machine —
and stops it at the end. The binaries must be in the cache already: building them
takes 5-25 minutes, which ``.ci/run`` does before the tests
(``python -m engine.lab.kube_build``). Without them, or when the cluster cannot
start, the tests are skipped — and fail under ``CI``.

Tests that change seed objects put them back or use their own objects (the data
cases use the namespace ``cases``); tests that promote PostgreSQL point a Cluster of
their own at a spare PostgreSQL lab.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from engine.lab.kube_api import KubeApi
from engine.lab.sandbox import LabError, lab_down, lab_up, server_bin_dir

# the same naming as services.postgres (not imported: a plugin importing another plugin
# keeps pytest from rewriting its asserts)
_CHECKOUT = hashlib.sha256(str(Path(__file__).resolve().parents[2]).encode()).hexdigest()[:8]
LAB_DIR = Path(tempfile.gettempdir()) / f"runbook-test-kube-lab-{_CHECKOUT}"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the Kubernetes lab cannot start: {reason}")
    pytest.skip(f"the Kubernetes lab cannot start here: {reason}")


def _require_services() -> None:
    from engine.lab.kube_build import cached_binaries_ok, default_cache_dir

    try:
        server_bin_dir()
    except LabError as exc:
        _unavailable(f"no PostgreSQL server programs: {exc}")
    if not shutil.which("etcd"):
        _unavailable("no etcd (apt-get install etcd-server)")
    if not cached_binaries_ok(default_cache_dir()):
        _unavailable(f"no kube-apiserver in {default_cache_dir()} "
                     f"(build it once: python -m engine.lab.kube_build)")


@pytest.fixture(scope="session")
def kube_lab():
    """The session's lab with Kubernetes: its description from ``lab_up``;
    ``parts.kubernetes`` has ``kubeconfig``, ``viewer_kubeconfig``, ``server``."""
    _require_services()
    try:
        description = lab_up(LAB_DIR, ["kubernetes"])
    except LabError as exc:
        lab_down(LAB_DIR)
        _unavailable(str(exc))
    yield description
    lab_down(LAB_DIR)


@pytest.fixture(scope="session")
def service_kubernetes(kube_lab) -> dict:
    """The ``service: kubernetes`` of action data cases: the lab's inventory and its vars."""
    return {"inventory": kube_lab["inventory"],
            "vars": {"lab": kube_lab, "kubeconfig": kube_lab["parts"]["kubernetes"]["kubeconfig"]}}


@pytest.fixture(scope="session")
def kube_api(kube_lab) -> KubeApi:
    """The cluster as its admin (stdlib client), for arranging and checking tests."""
    return KubeApi.from_kubeconfig(kube_lab["parts"]["kubernetes"]["kubeconfig"])
