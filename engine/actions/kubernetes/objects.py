"""The objects a step acts on: located through discovery, then read, listed, patched,
applied, deleted and watched. Each request's failure is one line naming the verb and
the object (``patch ConfigMap production/backend-config: ... (HTTP 404 Not Found)``).

Objects come back as plain dicts. ``dry_run=True`` sends the same request with the
server's own ``dryRun=All``: admission, validation and defaulting run, nothing is
stored — what every verb's ``plan()`` is built on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from engine.actions.kubernetes.refs import WELL_KNOWN, ObjectRef, canonical_kind
from engine.connections.kubernetes import KubeCluster, cluster_for
from engine.errors import ActionError

__all__ = ["Located", "locate", "CONTENT_TYPES", "STRICT"]

CONTENT_TYPES = {"merge": "application/merge-patch+json",
                 "strategic": "application/strategic-merge-patch+json",
                 "json": "application/json-patch+json"}
#: servers from 1.25 refuse unknown fields with this; older ones ignore the parameter
#: (and drop the field: ``diff.dropped_paths`` catches that)
STRICT = [("fieldValidation", "Strict")]


@dataclass(frozen=True)
class Located:
    """A kind found on a cluster, with the namespace the step acts in (None: cluster-scoped)."""

    cluster: KubeCluster
    resource: Any
    ref: ObjectRef
    namespace: str | None

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def builtin(self) -> bool:
        """A kind of Kubernetes itself (strategic merge works), not a custom resource."""
        group = self.resource.group or ""
        return "." not in group or group.endswith(".k8s.io")

    def shown(self, name: str | None = None) -> str:
        """``ConfigMap production/backend-config`` (``Namespace production`` unscoped)."""
        name = name or self.ref.name
        if not name:
            return ObjectRef(self.kind, None, self.namespace, None, self.ref.label_selector,
                             self.ref.field_selector).shown()
        return f"{self.kind} {self.namespace}/{name}" if self.namespace else f"{self.kind} {name}"

    # --- reading ---
    def read(self, ctx, name: str | None = None, missing_ok: bool = False,
             subresource: str | None = None) -> dict | None:
        """The object (None when it does not exist and ``missing_ok``)."""
        name = name or self.ref.name
        resource = self._sub(subresource)
        try:
            found = self.cluster.dynamic().get(resource, name=name, namespace=self.namespace,
                                               _request_timeout=self.cluster.timeout(ctx))
        except Exception as exc:
            if missing_ok and getattr(exc, "status", None) == 404:
                return None
            raise self.cluster.failure(f"get {self.shown(name)}", exc) from None
        return found.to_dict()

    def list_items(self, ctx) -> tuple[list[dict], str]:
        """The objects the selectors pick (the named one, if any: a list answers "absent"
        without an error), and the list's resourceVersion to watch from."""
        found = self.cluster.call(f"list {self.shown()}", lambda: self.cluster.dynamic().get(
            self.resource, namespace=self.namespace, label_selector=self.ref.label_selector,
            field_selector=self._field_selector(), _request_timeout=self.cluster.timeout(ctx)))
        listed = found.to_dict()
        return listed.get("items") or [], (listed.get("metadata") or {}).get("resourceVersion", "")

    def names(self, ctx) -> list[str]:
        """The named object, or the names the selectors pick."""
        if self.ref.name:
            return [self.ref.name]
        return [item["metadata"]["name"] for item in self.list_items(ctx)[0]]

    # --- changing (or, with dry_run, asking the server what would change) ---
    def patch(self, ctx, body: Any, patch_type: str, *, name: str | None = None,
              dry_run: bool = False, subresource: str | None = None) -> dict:
        name = name or self.ref.name
        extra = _dry(dry_run)
        found = self.cluster.call(f"patch {self.shown(name)}{_sub_label(subresource)}",
                                  lambda: self.cluster.dynamic().patch(
            self._sub(subresource), body=body, name=name, namespace=self.namespace,
            content_type=CONTENT_TYPES[patch_type], query_params=list(STRICT),
            _request_timeout=self.cluster.timeout(ctx), **extra))
        return found.to_dict()

    def apply(self, ctx, manifest: dict, *, force: bool, manager: str, dry_run: bool) -> dict:
        name = manifest["metadata"]["name"]
        found = self.cluster.call(f"apply {self.shown(name)}", lambda: self.cluster.dynamic()
                                  .server_side_apply(
            self.resource, body=manifest, name=name, namespace=self.namespace,
            field_manager=manager, force_conflicts=force, query_params=list(STRICT),
            _request_timeout=self.cluster.timeout(ctx), **_dry(dry_run)))
        return found.to_dict()

    def delete(self, ctx, name: str, *, propagation: str, dry_run: bool) -> dict:
        found = self.cluster.call(f"delete {self.shown(name)}", lambda: self.cluster.dynamic()
                                  .delete(
            self.resource, name=name, namespace=self.namespace, propagation_policy=propagation,
            _request_timeout=self.cluster.timeout(ctx), **_dry(dry_run)))
        return found.to_dict() if hasattr(found, "to_dict") else {}

    # --- watching ---
    def watch(self, ctx, seconds: int, resource_version: str | None) -> Iterator[dict]:
        """Events about the object (or the selection) for up to ``seconds``; the
        library's errors reach the caller, which falls back to polling."""
        from kubernetes import watch

        stream = watch.Watch().stream(
            self.cluster.dynamic().get, self.resource, namespace=self.namespace,
            field_selector=self._field_selector(), label_selector=self.ref.label_selector,
            resource_version=resource_version or None, timeout_seconds=max(1, int(seconds)),
            serialize=False, _request_timeout=(self.cluster.timeout(ctx)[0], seconds + 5))
        yield from stream

    def _field_selector(self) -> str | None:
        return f"metadata.name={self.ref.name}" if self.ref.name else self.ref.field_selector

    def _sub(self, subresource: str | None):
        if not subresource:
            return self.resource
        found = (self.resource.subresources or {}).get(subresource)
        if found is None:
            raise ActionError(f"{self.kind} has no {subresource} subresource on "
                              f"{self.cluster.server} (it has: "
                              f"{', '.join(sorted(self.resource.subresources or {})) or 'none'})")
        return found


def locate(ctx, ref: ObjectRef) -> Located:
    """Find the step's kind on its cluster (discovery) and the namespace it acts in."""
    try:
        cluster = cluster_for(ctx)
        resource = cluster.resource(ref.kind, ref.api_version,
                                    WELL_KNOWN.get(canonical_kind(ref.kind)))
        namespace = (ref.namespace or cluster.default_namespace) if resource.namespaced else None
    except ActionError as exc:  # no cluster, no such kind: say which object was asked for
        raise ActionError(f"{ref.shown()}: {exc}") from None
    return Located(cluster, resource, ref, namespace)


def _dry(dry_run: bool) -> dict:
    return {"dry_run": "All"} if dry_run else {}


def _sub_label(subresource: str | None) -> str:
    return f" ({subresource})" if subresource else ""
