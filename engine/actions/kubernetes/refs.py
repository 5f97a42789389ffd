"""What a kubernetes step names: the object reference in its arguments, the argument
schemas the verbs share, and the resource keys a rehearsal compares.

No network here: ``touches()`` is asked for every step of a rehearsal, so the kind
is normalised from a table of the common built-in kinds, not by discovery.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ObjectRef", "schema", "REF_PROPS", "SELECTOR_PROPS", "TIMEOUT_PROP",
           "canonical_kind", "resource_keys", "WELL_KNOWN"]

#: kind -> apiVersion of the built-in kinds stable in every Kubernetes this engine supports;
#: a first guess that saves a full discovery (a kind the server serves elsewhere still works)
WELL_KNOWN: dict[str, str] = {
    "Deployment": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
    "ReplicaSet": "apps/v1", "ConfigMap": "v1", "Secret": "v1", "Service": "v1", "Pod": "v1",
    "Namespace": "v1", "ServiceAccount": "v1", "PersistentVolumeClaim": "v1", "Node": "v1",
    "Endpoints": "v1", "Job": "batch/v1", "Ingress": "networking.k8s.io/v1",
    "CustomResourceDefinition": "apiextensions.k8s.io/v1",
}
_ALIASES = {
    "deploy": "Deployment", "deployments": "Deployment", "sts": "StatefulSet",
    "statefulsets": "StatefulSet", "ds": "DaemonSet", "daemonsets": "DaemonSet",
    "rs": "ReplicaSet", "replicasets": "ReplicaSet", "cm": "ConfigMap", "configmaps": "ConfigMap",
    "secrets": "Secret", "svc": "Service", "services": "Service", "po": "Pod", "pods": "Pod",
    "ns": "Namespace", "namespaces": "Namespace", "sa": "ServiceAccount", "pvc": "PersistentVolumeClaim",
    "jobs": "Job", "ing": "Ingress", "ingresses": "Ingress", "crd": "CustomResourceDefinition",
}
#: what a controller changes when its object changes: a look at a pod depends on every
#: workload of its namespace (a restart replaces the pods a selector would pick)
_OWNERS = {"Pod": ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"),
           "ReplicaSet": ("Deployment",)}


def schema(properties: dict, required: list[str], **extra: Any) -> dict:
    """An action's ``args_schema``: exactly these properties."""
    return {"type": "object", "additionalProperties": False,
            "required": required, "properties": properties, **extra}


REF_PROPS: dict[str, dict] = {
    "api_version": {"type": "string", "minLength": 1,
                    "description": "apiVersion of the kind, e.g. apps/v1, postgresql.cnpg.io/v1 "
                                   "(default: the version the server prefers)"},
    "kind": {"type": "string", "minLength": 1,
             "description": "Kind: Deployment, ConfigMap, Cluster ... (plural and short names work too)"},
    "namespace": {"type": "string", "minLength": 1,
                  "description": "Namespace of a namespaced kind (default: the context's, else 'default')"},
    "name": {"type": "string", "minLength": 1, "description": "Name of the object"},
}
SELECTOR_PROPS: dict[str, dict] = {
    "label_selector": {"type": "string", "minLength": 1,
                       "description": "Label selector instead of a name, e.g. 'app=api,tier!=db'"},
    "field_selector": {"type": "string", "minLength": 1,
                       "description": "Field selector, e.g. 'status.phase=Running'"},
}
TIMEOUT_PROP = {"type": ["string", "number"], "description": "A duration: 90, 90s, 5m (default 5m)."}


def canonical_kind(kind: str) -> str:
    """``Deployment`` for deployment, deploy, deployments; other kinds as written."""
    lowered = kind.lower()
    for known in WELL_KNOWN:
        if known.lower() == lowered:
            return known
    return _ALIASES.get(lowered, kind)


@dataclass(frozen=True)
class ObjectRef:
    """The object (or objects, by selector) a step names, as written in its arguments."""

    kind: str
    name: str | None = None
    namespace: str | None = None
    api_version: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None

    @classmethod
    def from_args(cls, args: dict) -> "ObjectRef":
        return cls(**{key: args.get(key) for key in
                      ("kind", "name", "namespace", "api_version", "label_selector",
                       "field_selector")})

    @property
    def by_selector(self) -> bool:
        return not self.name

    def shown(self) -> str:
        """``Deployment production/backend-api`` or ``Pod in production matching app=api``."""
        kind = canonical_kind(self.kind)
        where = f"{self.namespace}/" if self.namespace else ""
        if self.name:
            return f"{kind} {where}{self.name}"
        selectors = " ".join(s for s in (self.label_selector, self.field_selector) if s)
        place = f" in {self.namespace}" if self.namespace else ""
        return f"{kind}{place}" + (f" matching {selectors}" if selectors else "")


def resource_keys(cluster: str, ref: ObjectRef) -> set[str]:
    """``k8s:CLUSTER/NAMESPACE/Kind/name`` for a named object, ``.../Kind/*`` for a
    selection. Pods and replica sets also name every workload of their namespace
    (``.../Deployment/*``), whose controller changes them: a look at the pods after a
    planned restart is planned too, not run against the old pods."""
    kind = canonical_kind(ref.kind)
    namespace = ref.namespace or "~"
    keys = {f"k8s:{cluster}/{namespace}/{kind}/{ref.name or '*'}"}
    keys |= {f"k8s:{cluster}/{namespace}/{owner}/*" for owner in _OWNERS.get(kind, ())}
    return keys
