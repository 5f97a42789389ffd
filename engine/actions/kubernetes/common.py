"""What every kubernetes verb shares: its resource keys, argument checks, durations and
the one-line summary of an object."""
from __future__ import annotations

from typing import Any

from engine.actions.base import Action, ActionError
from engine.actions.kubernetes.refs import ObjectRef, resource_keys
from engine.connections.kubernetes import settings_of
from engine.durations import parse_duration

__all__ = ["KubeAction", "seconds", "summary", "require_name", "one_of_name_or_selector"]

DEFAULT_TIMEOUT = 300.0


class KubeAction(Action):
    """Base of the verbs: the object they name is what a rehearsal remembers."""

    def touches(self, args: Any, ctx) -> set[str]:
        """``k8s:<target>/<namespace>/<Kind>/<name>`` (``/*`` for a selection): a get or
        wait of an object a planned patch/scale changes is then planned, not run
        against the old state."""
        if not isinstance(args, dict) or not isinstance(args.get("kind"), str):
            return set()
        return resource_keys(cluster_label(ctx), ObjectRef.from_args(args))


def cluster_label(ctx) -> str:
    """The target's name (or context) for resource keys; never talks to the cluster."""
    try:
        return settings_of(ctx.target).label
    except ActionError:
        return "default"


def seconds(value: Any, default: float = DEFAULT_TIMEOUT) -> float:
    if value is None:
        return default
    try:
        return float(parse_duration(value))
    except ValueError as exc:
        raise ActionError(str(exc)) from None


def require_name(args: dict, verb: str) -> None:
    if not args.get("name"):
        raise ActionError(f"{verb} needs the object's name")


def one_of_name_or_selector(args: dict, verb: str) -> None:
    named = bool(args.get("name"))
    selected = bool(args.get("label_selector") or args.get("field_selector"))
    if named and selected:
        raise ActionError(f"{verb}: give name or a selector, not both")
    if not named and not selected:
        raise ActionError(f"{verb}: give name, label_selector or field_selector")


def summary(obj: dict) -> str:
    """``replicas 3, ready 3, updated 3`` for a workload, the phase of a pod or a custom
    resource, '' when there is nothing short to say."""
    status = obj.get("status") or {}
    if not isinstance(status, dict):
        return ""
    if "replicas" in (obj.get("spec") or {}) and obj.get("kind") in ("Deployment", "StatefulSet",
                                                                       "ReplicaSet"):
        return (f"replicas {obj['spec']['replicas']}, ready {status.get('readyReplicas') or 0}, "
                f"updated {status.get('updatedReplicas') or 0}")
    if isinstance(status.get("phase"), str):
        return f"phase {status['phase']}"
    return ""
