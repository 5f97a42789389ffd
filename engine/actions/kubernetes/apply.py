"""``kubernetes.apply`` (server-side apply) and ``kubernetes.delete``."""
from __future__ import annotations

import copy

from engine.actions.base import ActionError, Context, Result
from engine.actions.kubernetes.common import KubeAction, cluster_label, one_of_name_or_selector, seconds
from engine.actions.kubernetes.diff import changes, describe, is_secret, reappliable, without_secrets
from engine.actions.kubernetes.manifests import manifests_of, ref_of_manifest
from engine.actions.kubernetes.objects import Located, locate
from engine.actions.kubernetes.refs import REF_PROPS, SELECTOR_PROPS, TIMEOUT_PROP, ObjectRef, \
    resource_keys, schema
from engine.actions.kubernetes.waiting import wait_until
from engine.actions.resources import file_key
from engine.connections.kubernetes import FIELD_MANAGER

__all__ = ["Apply", "Delete"]


class Apply(KubeAction):
    """Create or update objects from manifests with server-side apply (field manager `runbook`)."""

    name = "kubernetes.apply"
    mutates = True
    args_schema = schema({
        "manifest": {"type": ["object", "array"], "items": {"type": "object"},
                     "description": "An object, or a list of objects, to apply"},
        "path": {"type": "string", "minLength": 1,
                 "description": "A YAML/JSON file (multi-document) or a directory of them"},
        "namespace": {**REF_PROPS["namespace"],
                      "description": "Namespace for namespaced objects whose manifest names none"},
        "force": {"type": "boolean", "default": False,
                  "description": "Take over fields another manager owns (server-side apply's "
                                 "force; otherwise such a conflict fails with 409)"},
        "field_manager": {"type": "string", "minLength": 1, "default": FIELD_MANAGER},
    }, [], oneOf=[{"required": ["manifest"]}, {"required": ["path"]}])

    def touches(self, args, ctx) -> set[str]:
        keys = {file_key(args["path"])} if isinstance(args, dict) and args.get("path") else set()
        try:
            docs = manifests_of(args)
        except (ActionError, TypeError, KeyError):
            return keys
        label = cluster_label(ctx)
        for doc in docs:
            keys |= resource_keys(label, ref_of_manifest(doc, args.get("namespace")))
        return keys

    def plan(self, args: dict, ctx: Context) -> str:
        outcomes = [self._apply_one(ctx, args, doc, dry_run=True) for doc in manifests_of(args)]
        if all(o["action"] == "unchanged" for o in outcomes):
            return "no change: " + "; ".join(o["shown"] for o in outcomes) + " as in the manifest"
        return "; ".join(_line(o, planned=True) for o in outcomes if o["action"] != "unchanged") + \
            _unchanged_tail(outcomes)

    def run(self, args: dict, ctx: Context) -> Result:
        outcomes = [self._apply_one(ctx, args, doc, dry_run=False) for doc in manifests_of(args)]
        changed = any(o["action"] != "unchanged" for o in outcomes)
        message = "; ".join(_line(o, planned=False) for o in outcomes)
        for outcome in outcomes:
            outcome.pop("diff")
        return Result(ok=True, changed=changed, data={"objects": outcomes}, message=message)

    def _apply_one(self, ctx, args: dict, doc: dict, dry_run: bool) -> dict:
        located = locate(ctx, ref_of_manifest(doc, args.get("namespace")))
        body = copy.deepcopy(doc)
        if located.namespace:
            body["metadata"]["namespace"] = located.namespace
        live = located.read(ctx, missing_ok=True)
        try:
            answer = located.apply(ctx, body, force=bool(args.get("force")),
                                   manager=args.get("field_manager") or FIELD_MANAGER,
                                   dry_run=dry_run)
        except ActionError as exc:
            if "HTTP 409" in str(exc) and not args.get("force"):
                raise ActionError(f"{exc}; set force: true to take these fields over") from None
            raise
        found = changes(live, answer) if live is not None else []
        action = "created" if live is None else "configured" if found else "unchanged"
        secret = is_secret(answer)
        return {"kind": located.kind, "namespace": located.namespace, "name": located.ref.name,
                "action": action, "shown": located.shown(),
                "changes": [] if secret else [c.__dict__ for c in found],
                "diff": describe(found, secret)}


def _line(outcome: dict, planned: bool) -> str:
    verbs = {"created": ("create", "created"), "configured": ("apply", "applied"),
             "unchanged": ("keep", "unchanged")}[outcome["action"]]
    line = f"{verbs[0 if planned else 1]} {outcome['shown']}"
    return f"{line}: {outcome['diff']}" if outcome["action"] == "configured" else line


def _unchanged_tail(outcomes: list[dict]) -> str:
    same = sum(o["action"] == "unchanged" for o in outcomes)
    return f" ({same} more unchanged)" if same else ""


class Delete(KubeAction):
    """Delete an object (or those a selector picks) and wait until it is gone; returns `previous`, re-appliable."""

    name = "kubernetes.delete"
    mutates = True
    args_schema = schema({
        **REF_PROPS, **SELECTOR_PROPS,
        "propagation": {"enum": ["Background", "Foreground", "Orphan"], "default": "Background",
                        "description": "What happens to dependents (pods of a ReplicaSet ...)"},
        "wait": {"type": "boolean", "default": True,
                 "description": "Wait until the object is gone (finalizers done)"},
        "timeout": TIMEOUT_PROP,
        "missing_ok": {"type": "boolean", "default": True,
                       "description": "An object already gone is no error (changed: false)"},
    }, ["kind"])

    def plan(self, args: dict, ctx: Context) -> str:
        located, names = _deletable(ctx, args)
        gone = [n for n in names if _delete_one(ctx, located, n, args, dry_run=True) is None]
        present = [n for n in names if n not in gone]
        if not present:
            return f"no change: {located.shown()} already absent"
        how = f"propagation {args.get('propagation', 'Background')}"
        return f"delete {', '.join(located.shown(n) for n in present)} ({how})"

    def run(self, args: dict, ctx: Context) -> Result:
        located, names = _deletable(ctx, args)
        before = {n: _delete_one(ctx, located, n, args, dry_run=False) for n in names}
        deleted = [n for n, obj in before.items() if obj is not None]
        if deleted and args.get("wait", True):
            self._wait_gone(ctx, located, deleted, seconds(args.get("timeout"), 120.0))
        previous = [without_secrets(reappliable(obj)) for obj in before.values() if obj is not None]
        data = {"deleted": deleted,
                "previous": previous[0] if located.ref.name and previous else previous or None}
        message = f"deleted {', '.join(located.shown(n) for n in deleted)}" if deleted \
            else f"{located.shown()} already absent"
        return Result(ok=True, changed=bool(deleted), data=data, message=message)

    def _wait_gone(self, ctx, located: Located, names: list[str], timeout: float) -> None:
        for name in names:
            one = locate_named(located, name)
            wait_until(ctx, one, lambda obj: (obj is None, "gone" if obj is None else
                                              "still there (finalizers?)"), timeout)


def locate_named(located: Located, name: str) -> Located:
    ref = ObjectRef(located.ref.kind, name, located.namespace, located.ref.api_version)
    return Located(located.cluster, located.resource, ref, located.namespace)


def _deletable(ctx, args: dict) -> tuple[Located, list[str]]:
    one_of_name_or_selector(args, "kubernetes.delete")
    located = locate(ctx, ObjectRef.from_args(args))
    return located, located.names(ctx)


def _delete_one(ctx, located: Located, name: str, args: dict, dry_run: bool) -> dict | None:
    """The object as it was before the deletion; None when it was already gone."""
    live = located.read(ctx, name, missing_ok=True)
    if live is None:
        if args.get("missing_ok", True):
            return None
        raise ActionError(f"delete {located.shown(name)}: not found (missing_ok: false)")
    located.delete(ctx, name, propagation=args.get("propagation", "Background"), dry_run=dry_run)
    return live
