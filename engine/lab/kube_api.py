"""A small stdlib client of the lab's kube-apiserver (urllib, JSON, watch streams).

The lab starts, seeds and operates its cluster with this client rather than the
``kubernetes`` package, so ``runbook lab`` and ``python -m engine.lab.kube_build``
need nothing beyond the standard library. The engine's actions use the real
``kubernetes`` client (``engine.connections.kubernetes``).
"""
from __future__ import annotations

import base64
import json
import re
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["KubeApi", "KubeApiError", "KubeClusterError", "MERGE_PATCH", "follow"]

MERGE_PATCH = "application/merge-patch+json"
WATCH_SECONDS = 2  # a watch ends this often, so a stop event is seen quickly
POLL_SECONDS = 0.2


class KubeClusterError(RuntimeError):
    """The cluster could not start; one line, with the tail of the log of
    the process that failed."""


class KubeApiError(RuntimeError):
    """An API call answered with an HTTP error."""

    def __init__(self, status: int, reason: str, body: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {body[:300]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class KubeApi:
    """Connection to the apiserver: ``server`` URL, bearer ``token`` and the
    PEM CA data (None: do not verify TLS)."""

    server: str
    token: str
    ca_pem: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_kubeconfig(cls, path: Path, timeout: float = 30.0) -> "KubeApi":
        """Read a kubeconfig written by ``start_cluster`` (one cluster, one
        token user; not a general kubeconfig parser)."""
        text = Path(path).read_text()
        server = _yaml_value(text, "server")
        token = _yaml_value(text, "token")
        ca_data = _yaml_value(text, "certificate-authority-data", required=False)
        ca_pem = base64.b64decode(ca_data).decode() if ca_data else None
        return cls(server, token, ca_pem, timeout)

    def ssl_context(self) -> ssl.SSLContext:
        if self.ca_pem is None:
            return ssl._create_unverified_context()
        return ssl.create_default_context(cadata=self.ca_pem)

    def api(self, method: str, path: str, body: Any = None,
            content_type: str = "application/json") -> Any:
        """One API call; ``body`` is JSON-encoded unless it is bytes/str.
        Returns the decoded JSON answer (or text); raises KubeApiError."""
        with self._open(method, path, body, content_type, self.timeout) as resp:
            raw = resp.read().decode()
            if resp.headers.get_content_type() == "application/json":
                return json.loads(raw)
            return raw

    def get_or_none(self, path: str) -> Any:
        """GET ``path``; None when it is 404."""
        try:
            return self.api("GET", path)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    def stream(self, path: str, timeout: float) -> Iterator[dict]:
        """Yield the JSON lines of a watch (``path`` must carry ``watch=1``)."""
        with self._open("GET", path, None, "application/json", timeout) as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)

    def _open(self, method: str, path: str, body: Any, content_type: str, timeout: float):
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            return urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context())
        except urllib.error.HTTPError as exc:
            raise KubeApiError(exc.code, exc.reason, exc.read().decode(errors="replace")) from None


def _yaml_value(text: str, key: str, required: bool = True) -> str | None:
    match = re.search(rf"^\s*{re.escape(key)}:\s*(\S+)\s*$", text, re.MULTILINE)
    if match:
        return match.group(1).strip("'\"")
    if required:
        raise KubeClusterError(f"kubeconfig has no {key!r}")
    return None


# --------------------------------------------------------------------------
# Following a kind: what the lab's kubelet and operators run on
# --------------------------------------------------------------------------

Handler = Callable[[KubeApi, dict], None]


def follow(api: KubeApi, list_path: str, handle: Handler, stop: threading.Event,
           log: Callable[[str], None], who: str) -> None:
    """Call ``handle(api, obj)`` for every object at ``list_path`` (a collection,
    e.g. ``/api/v1/pods``) and then for every change, until ``stop``: list, then
    short watches resumed where the last one ended; list again after a 410; poll
    every 0.2 s while the server cannot be reached."""
    last_error = None
    while not stop.is_set():
        try:
            version = _handle_all(api, list_path, handle)
            _watch(api, list_path, version, handle, stop)
        except (OSError, KubeApiError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if error != last_error:  # once, not every 0.2 s
                log(f"{who}: {error}; polling every {POLL_SECONDS}s")
            last_error = error
            stop.wait(POLL_SECONDS)


def _handle_all(api: KubeApi, list_path: str, handle: Handler) -> str:
    listed = api.api("GET", list_path)
    for obj in listed.get("items", []):
        handle(api, obj)
    return listed["metadata"]["resourceVersion"]


def _watch(api: KubeApi, list_path: str, version: str, handle: Handler,
           stop: threading.Event) -> None:
    while not stop.is_set():
        path = (f"{list_path}?watch=1&allowWatchBookmarks=true"
                f"&resourceVersion={version}&timeoutSeconds={WATCH_SECONDS}")
        for event in api.stream(path, timeout=WATCH_SECONDS + 10):
            obj = event.get("object", {})
            if event.get("type") == "ERROR":
                return  # typically 410 Gone: list again
            version = obj.get("metadata", {}).get("resourceVersion", version)
            if event.get("type") in ("ADDED", "MODIFIED"):
                handle(api, obj)
            if stop.is_set():
                return
