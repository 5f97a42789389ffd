"""Kubernetes: one API client per target per run, any kind through discovery.

The ``kubernetes.*`` actions reach a cluster through :func:`cluster_for`: the
step's target names it (``kubernetes: {kubeconfig, context, token}`` in the
inventory); without one, the default kubeconfig (``$KUBECONFIG`` or
``~/.kube/config``) and its current context. The ``kubernetes`` package is
imported only here, inside functions, when a step first talks to a cluster.

Every kind, custom resources included, is found through the server's discovery
(the dynamic client), cached per server in the run's directory. Every request
carries a timeout bounded by the step's deadline. Every failure becomes one
``ActionError`` line naming what was asked (:func:`failure`), never a
traceback; the bearer token is masked in it and added to the run's redactor.
This module builds on the library's public dynamic API only, not on
``ApiClient.call_api`` (regenerated in client 37).
"""
from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engine.errors import ActionError

__all__ = ["ClusterSettings", "KubeCluster", "cluster_for", "failure", "settings_of", "FIELD_MANAGER"]

#: seconds to open a connection to the API server
CONNECT_TIMEOUT = 10.0
#: seconds a single request may take (a watch sets its own)
READ_TIMEOUT = 60.0
SETTING_KEYS = ("kubeconfig", "context", "token", "namespace")
#: who the server records as the owner of the fields the engine sets
FIELD_MANAGER = "runbook"


@dataclass(frozen=True)
class ClusterSettings:
    """A target's ``kubernetes:`` block; ``target`` is the inventory name (or None)."""

    target: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    token: str | None = None
    namespace: str | None = None

    @property
    def label(self) -> str:
        """How messages name the cluster: the target, else the context, else 'default'."""
        return self.target or self.context or "default"

    @property
    def cache_key(self) -> tuple:
        token_id = hashlib.sha256(self.token.encode()).hexdigest()[:12] if self.token else None
        return ("kubernetes", self.target, self.kubeconfig, self.context, token_id)


def settings_of(target: dict | None) -> ClusterSettings:
    """The cluster settings of the step's target (None: the default kubeconfig)."""
    if not target:
        return ClusterSettings()
    block = target.get("kubernetes") or {}
    name = target.get("name")
    if not isinstance(block, dict):
        raise ActionError(f"target '{name}': 'kubernetes' must be a mapping "
                          f"(kubeconfig, context, token, namespace)")
    unknown = sorted(set(block) - set(SETTING_KEYS))
    if unknown:
        raise ActionError(f"target '{name}': unknown kubernetes setting(s) {', '.join(unknown)} "
                          f"(known: {', '.join(SETTING_KEYS)})")
    values = {k: (str(block[k]) if block.get(k) not in (None, "") else None) for k in SETTING_KEYS}
    return ClusterSettings(target=name, **values)


def cluster_for(ctx) -> "KubeCluster":
    """The run's client for the step's cluster (one per target per run)."""
    settings = settings_of(ctx.target)
    if settings.token and ctx.redactor is not None:
        ctx.redactor.add([settings.token])
    cache_dir = Path(ctx.state_dir) / "cache" / "kubernetes" if ctx.state_dir else None
    return ctx.connection(settings.cache_key, lambda: KubeCluster(settings, cache_dir))


class KubeCluster:
    """The API and dynamic clients of one cluster, opened on first use: the kubeconfig
    read, the connection made and the server's API groups listed (each group's kinds
    are fetched when first looked up). ``close()`` releases the connection pool.
    """

    def __init__(self, settings: ClusterSettings, cache_dir: Path | None = None) -> None:
        self.settings = settings
        self.cache_dir = cache_dir
        self.secrets: list[str] = [settings.token] if settings.token else []
        self._api = None
        self._dynamic = None
        self._default_namespace = "default"
        self._lock = threading.Lock()

    # --- opening ---
    def dynamic(self):
        """The ``kubernetes.dynamic.DynamicClient`` (ActionError when it cannot be made)."""
        with self._lock:
            if self._dynamic is None:
                self._open()
            return self._dynamic

    @property
    def default_namespace(self) -> str:
        """The kubeconfig context's namespace (or the target's ``namespace``), else 'default'."""
        self.dynamic()
        return self.settings.namespace or self._default_namespace

    @property
    def server(self) -> str:
        self.dynamic()
        return self._api.configuration.host

    def _open(self) -> None:
        from kubernetes import client, dynamic

        configuration = self._configuration()
        configuration.retries = 1  # urllib3's 3 retries would triple every refused connection
        if not configuration.verify_ssl:
            _quiet_insecure_warnings()  # the kubeconfig asked for it; kubectl does not warn either
        self._api = client.ApiClient(configuration)
        # The server names a patch's field manager after the user agent's product:
        # "runbook", not the generator's "OpenAPI-Generator"
        self._api.user_agent = f"{FIELD_MANAGER}/engine"
        cache_file = None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            host = hashlib.sha256(configuration.host.encode()).hexdigest()[:16]
            cache_file = str(self.cache_dir / f"discovery-{host}.json")
        try:
            self._dynamic = dynamic.DynamicClient(self._api, cache_file=cache_file)
        except Exception as exc:
            reason = describe_error(exc, configuration.host)
            if not reason.startswith("cannot reach"):
                reason = f"discovery on {configuration.host}: {reason}"
            raise ActionError(self.mask(reason)) from None

    def _configuration(self):
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        configuration = client.Configuration()
        path = str(Path(self.settings.kubeconfig).expanduser()) if self.settings.kubeconfig else None
        where = path or "the default kubeconfig ($KUBECONFIG or ~/.kube/config)"
        try:
            config.load_kube_config(config_file=path, context=self.settings.context,
                                    client_configuration=configuration, persist_config=False)
            self._default_namespace = _context_namespace(path, self.settings.context) or "default"
        except ConfigException as exc:
            raise ActionError(f"kubeconfig {where}: {self.mask(_first_line(exc))}") from None
        except Exception as exc:  # a malformed file: YAML errors, wrong types, unreadable
            detail = getattr(exc, "strerror", None) or _first_line(exc)
            raise ActionError(f"kubeconfig {where} cannot be used: {self.mask(detail)}") from None
        self._remember_credentials(configuration)
        return configuration

    def _remember_credentials(self, configuration) -> None:
        """Use the target's token over the kubeconfig's user; mask whichever is used."""
        if self.settings.token:
            bearer = f"Bearer {self.settings.token}"
            # client 36 reads "BearerToken", earlier ones "authorization"; the kubeconfig's
            # refresh hook would put the kubeconfig user's token back before each request
            configuration.api_key = {"BearerToken": bearer, "authorization": bearer}
            configuration.refresh_api_key_hook = None
        for value in (configuration.api_key or {}).values():
            token = str(value).split(" ", 1)[1] if str(value).startswith("Bearer ") else str(value)
            if token and token not in self.secrets:
                self.secrets.append(token)
        if configuration.password:
            self.secrets.append(configuration.password)

    # --- kinds ---
    def resource(self, kind: str, api_version: str | None = None, guess: str | None = None):
        """The dynamic client's resource for ``kind`` (a kind, plural or short name, any
        case) in ``api_version`` — or, without one, ``guess`` (a well-known version)
        and then the server's preferred version; ActionError naming what is served."""
        dynamic_client = self.dynamic()
        for version in ([api_version] if api_version else [guess] if guess else []):
            found = self._lookup(dynamic_client, kind, version)
            if found is not None:
                return found
            if api_version:
                raise ActionError(self._unknown_kind(kind, api_version))
        return self._search(dynamic_client, kind)

    def _lookup(self, dynamic_client, kind: str, api_version: str):
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            found = dynamic_client.resources.get(api_version=api_version, kind=kind)
            # the library reads a bare "v1" as "any group's v1": check the group too
            if found.group_version == api_version:
                return found
        except ResourceNotFoundError:
            pass
        except Exception as exc:
            raise self.failure(f"discovery of {kind} in {api_version}", exc) from None
        matches = self._matching(dynamic_client, kind, api_version)
        return matches[0] if len(matches) == 1 else None

    def _search(self, dynamic_client, kind: str):
        matches = [r for r in self._matching(dynamic_client, kind) if r.preferred]
        groups = sorted({r.group for r in matches})
        if len(groups) > 1 and "" in groups:
            matches, groups = [r for r in matches if r.group == ""], [""]
        if not matches:
            raise ActionError(self._unknown_kind(kind, None))
        if len(groups) > 1:
            served = ", ".join(sorted({r.group_version for r in matches}))
            raise ActionError(f"kind {kind} is served by several API groups ({served}): "
                              f"set api_version")
        return matches[0]

    def _matching(self, dynamic_client, kind: str, api_version: str | None = None) -> list:
        """Top-level resources whose kind, plural, singular or short name is ``kind``."""
        wanted = kind.lower()
        try:
            found = list(dynamic_client.resources.search(
                **({"api_version": api_version} if api_version else {})))
        except Exception as exc:
            if type(exc).__name__ == "ResourceNotFoundError":
                return []
            raise self.failure("discovery", exc) from None
        return [r for r in found if "/" not in (r.name or "") and wanted in _names(r)
                and (api_version is None or r.group_version == api_version)]

    def _unknown_kind(self, kind: str, api_version: str | None) -> str:
        import difflib

        where = f" in {api_version}" if api_version else ""
        if api_version:
            elsewhere = sorted({r.group_version for r in self._matching(self.dynamic(), kind)})
            if elsewhere:
                return f"unknown kind {kind}{where}: {self.server} serves it as {', '.join(elsewhere)}"
        known = sorted({r.kind for r in self._matching_all()})
        close = difflib.get_close_matches(kind, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown kind {kind}{where}: {self.server} does not serve it{hint}"

    def _matching_all(self) -> list:
        try:
            return [r for r in self.dynamic().resources.search() if "/" not in (r.name or "")]
        except Exception:  # only for a hint
            return []

    # --- requests ---
    def timeout(self, ctx, read: float = READ_TIMEOUT) -> tuple[float, float]:
        """(connect, read) seconds for one request, bounded by the step's deadline."""
        left = ctx.time_left(read) if ctx is not None else read
        return (min(CONNECT_TIMEOUT, max(left, 1.0)), max(left, 1.0))

    def call(self, what: str, request: Callable[[], Any]) -> Any:
        """Run one request; any failure becomes ``ActionError('what: reason')``."""
        try:
            return request()
        except ActionError:
            raise
        except Exception as exc:
            raise self.failure(what, exc) from None

    def failure(self, what: str, exc: BaseException) -> ActionError:
        return ActionError(self.mask(f"{what}: {describe_error(exc, self._host())}"))

    def mask(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def _host(self) -> str:
        return self._api.configuration.host if self._api is not None else "the API server"

    def close(self) -> None:
        if self._api is not None:
            try:
                self._api.close()
            except Exception:  # closing at the end of a run must not fail it
                pass


def failure(cluster: KubeCluster, what: str, exc: BaseException) -> ActionError:
    return cluster.failure(what, exc)


def describe_error(exc: BaseException, host: str) -> str:
    """One line for a failed request: the server's own message and HTTP status, or
    why the server could not be reached."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status:
        return f"{_server_message(exc)} (HTTP {status}{_reason(exc)})"
    name = type(exc).__name__
    if name == "ResourceNotFoundError":
        return f"the server does not serve this kind ({exc})"
    if name in ("MaxRetryError", "NewConnectionError", "ProtocolError", "ConnectTimeoutError",
                "ReadTimeoutError", "SSLError", "TimeoutError", "ConnectionError"):
        return f"cannot reach the Kubernetes API at {host}: {_network_reason(exc)}"
    return f"{name}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}"


def _server_message(exc: BaseException) -> str:
    import json

    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = None
        return message or " ".join(str(body).split())[:300]
    return str(getattr(exc, "reason", "") or "no detail")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return f" {reason}" if isinstance(reason, str) and reason else ""


def _network_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if "Connection refused" in text:
        return "connection refused"
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "TLS certificate verify failed"
    if "timed out" in text.lower():
        return "timed out"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return " ".join(text.split())[:200]


def _quiet_insecure_warnings() -> None:
    import warnings

    from urllib3.exceptions import InsecureRequestWarning

    warnings.filterwarnings("ignore", category=InsecureRequestWarning)


def _names(resource) -> set[str]:
    names = {resource.kind, resource.name, getattr(resource, "singular_name", None),
             *(getattr(resource, "short_names", None) or [])}
    return {n.lower() for n in names if n}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _context_namespace(path: str | None, context: str | None) -> str | None:
    """The namespace the kubeconfig's (chosen or current) context sets, if any."""
    from kubernetes import config

    contexts, active = config.list_kube_config_contexts(config_file=path)
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return ((chosen or {}).get("context") or {}).get("namespace")
