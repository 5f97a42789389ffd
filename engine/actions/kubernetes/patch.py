"""``kubernetes.patch``: merge, strategic-merge or JSON patch of an object or of its
status/scale subresource; the plan is the server's dry-run of the same patch."""
from __future__ import annotations

from engine.actions.base import ActionError, Context, Result
from engine.actions.kubernetes.common import KubeAction, require_name
from engine.actions.kubernetes.diff import changes, describe, dropped_paths, is_secret, \
    revert_patch, without_secrets
from engine.actions.kubernetes.objects import CONTENT_TYPES, Located, locate
from engine.actions.kubernetes.refs import REF_PROPS, ObjectRef, schema

__all__ = ["Patch"]


class Patch(KubeAction):
    """Patch an object (or its status/scale subresource); returns the changes and `previous`, the merge patch that undoes them."""

    name = "kubernetes.patch"
    mutates = True
    args_schema = schema({
        **REF_PROPS,
        "patch": {"type": ["object", "array"],
                  "description": "The patch: a mapping (merge/strategic) or a list of JSON-patch operations"},
        "type": {"enum": sorted(CONTENT_TYPES),
                 "description": "strategic (default for Kubernetes' own kinds), merge (default "
                                "for custom resources: they answer 415 to strategic) or json"},
        "subresource": {"enum": ["status", "scale"],
                        "description": "Patch this subresource instead of the object "
                                       "(CloudNativePG's targetPrimary lives in status)"},
    }, ["kind", "name", "patch"])

    def plan(self, args: dict, ctx: Context) -> str:
        located, patch_type = _located(ctx, args)
        live, answer = _patched(ctx, located, args, patch_type, dry_run=True)
        found = changes(live, answer)
        where = located.shown() + (f" ({args['subresource']})" if args.get("subresource") else "")
        if not found:
            return f"no change: {where} already matches the patch"
        return f"patch {where}: {describe(found, secret=is_secret(live))}"

    def run(self, args: dict, ctx: Context) -> Result:
        located, patch_type = _located(ctx, args)
        live, answer = _patched(ctx, located, args, patch_type, dry_run=False)
        found = changes(live, answer)
        secret = is_secret(live)
        data = {"object": without_secrets(answer),
                "changes": [] if secret else [c.__dict__ for c in found],
                "previous": {} if secret else revert_patch(live, answer)}
        where = located.shown() + (f" ({args['subresource']})" if args.get("subresource") else "")
        message = f"patched {where}: {describe(found, secret)}" if found else \
            f"{where} already matched the patch"
        return Result(ok=True, changed=bool(found), data=data, message=message)


def _located(ctx, args: dict) -> tuple[Located, str]:
    require_name(args, "kubernetes.patch")
    located = locate(ctx, ObjectRef.from_args(args))
    patch_type = args.get("type") or _default_type(located, args["patch"])
    if patch_type == "json" and not isinstance(args["patch"], list):
        raise ActionError("type json needs a list of operations ({op, path, value})")
    if patch_type != "json" and isinstance(args["patch"], list):
        raise ActionError(f"type {patch_type} needs a mapping, not a list (a list is a json patch)")
    if patch_type == "strategic" and not located.builtin:
        raise ActionError(f"{located.kind} ({located.resource.group_version}) is a custom resource: "
                          f"the server refuses strategic merge patches (415); use type: merge")
    return located, patch_type


def _default_type(located: Located, patch) -> str:
    if isinstance(patch, list):
        return "json"
    return "strategic" if located.builtin else "merge"


def _patched(ctx, located: Located, args: dict, patch_type: str,
             dry_run: bool) -> tuple[dict, dict]:
    """(the live object, the server's answer to the patch — or to its dry-run)."""
    subresource = args.get("subresource")
    live = located.read(ctx, subresource=subresource)
    answer = located.patch(ctx, args["patch"], patch_type, dry_run=dry_run, subresource=subresource)
    dropped = dropped_paths(args["patch"], answer) if patch_type != "json" else []
    if dropped:
        ignored = _ignored_by_subresource(subresource, dropped)
        raise ActionError(f"patch {located.shown()}: the server ignored "
                          f"{', '.join(dropped)}{ignored}")
    return live, answer


def _ignored_by_subresource(subresource: str | None, dropped: list[str]) -> str:
    if subresource == "status" and any(not p.startswith("status") for p in dropped):
        return " (the status subresource changes only status)"
    if subresource:
        return f" (not part of the {subresource} subresource)"
    return " (unknown field: a typo, or a field this server version does not know)"
