"""``kubernetes.scale`` and ``kubernetes.rollout_restart``: the workload verbs."""
from __future__ import annotations

from datetime import datetime, timezone

from engine.actions.base import ActionError, Context, Result
from engine.actions.kubernetes.common import KubeAction, require_name, seconds
from engine.actions.kubernetes.objects import Located, locate
from engine.actions.kubernetes.refs import REF_PROPS, SELECTOR_PROPS, TIMEOUT_PROP, ObjectRef, schema
from engine.actions.kubernetes.rollout import ROLLOUT_KINDS, RolloutFailed, rollout_state
from engine.actions.kubernetes.waiting import wait_until

__all__ = ["Scale", "RolloutRestart", "RESTARTED_AT"]

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class Scale(KubeAction):
    """Set the replicas of a Deployment, StatefulSet or any kind with a scale subresource; returns `previous`."""

    name = "kubernetes.scale"
    mutates = True
    args_schema = schema({
        **REF_PROPS, "label_selector": SELECTOR_PROPS["label_selector"],
        "replicas": {"type": ["integer", "object"], "minimum": 0,
                     "additionalProperties": {"type": "integer", "minimum": 0},
                     "description": "Replicas wanted; or {name: replicas, ...} for several objects "
                                    "(what `previous` of an earlier scale holds, for a rollback)"},
    }, ["kind", "replicas"])

    def plan(self, args: dict, ctx: Context) -> str:
        located, wanted = _scale_targets(ctx, args)
        moves = [_scale_one(ctx, located, name, replicas, dry_run=True)
                 for name, replicas in wanted.items()]
        return _scale_line(located, moves, planned=True)

    def run(self, args: dict, ctx: Context) -> Result:
        located, wanted = _scale_targets(ctx, args)
        moves = [_scale_one(ctx, located, name, replicas, dry_run=False)
                 for name, replicas in wanted.items()]
        single = len(moves) == 1 and isinstance(args["replicas"], int) and args.get("name")
        previous = moves[0][1] if single else {name: before for name, before, _ in moves}
        replicas = moves[0][2] if single else {name: after for name, _, after in moves}
        changed = any(before != after for _, before, after in moves)
        return Result(ok=True, changed=changed, data={"previous": previous, "replicas": replicas},
                      message=_scale_line(located, moves, planned=False))


def _scale_targets(ctx, args: dict) -> tuple[Located, dict[str, int]]:
    """The kind located, and {name: replicas wanted} from a name, a selector or a mapping."""
    replicas = args["replicas"]
    named, selected = args.get("name"), args.get("label_selector")
    if isinstance(replicas, dict):
        if named or selected:
            raise ActionError("kubernetes.scale: with replicas as {name: n} give no name or selector")
        if not replicas:
            raise ActionError("kubernetes.scale: replicas {} names no object")
    elif bool(named) == bool(selected):
        raise ActionError("kubernetes.scale: give name or label_selector (one of them)")
    located = locate(ctx, ObjectRef.from_args(args))
    if isinstance(replicas, dict):
        return located, {str(name): int(n) for name, n in replicas.items()}
    names = located.names(ctx)
    if not names:
        raise ActionError(f"no {located.shown()} to scale")
    return located, {name: int(replicas) for name in names}


def _scale_one(ctx, located: Located, name: str, replicas: int,
               dry_run: bool) -> tuple[str, int, int]:
    """(name, replicas before, replicas after — or after the server's dry-run)."""
    before = located.read(ctx, name, subresource="scale")
    answer = located.patch(ctx, {"spec": {"replicas": replicas}}, "merge", name=name,
                           dry_run=dry_run, subresource="scale")
    return name, (before.get("spec") or {}).get("replicas", 0), \
        (answer.get("spec") or {}).get("replicas", 0)


def _scale_line(located: Located, moves: list[tuple[str, int, int]], planned: bool) -> str:
    """``scale production/Deployment/backend-api 3 → 5`` or ``no change: ... already 5``."""
    verb = "scale" if planned else "scaled"
    if len(moves) == 1 and located.ref.name:
        name, before, after = moves[0]
        where = f"{located.namespace}/{located.kind}/{name}" if located.namespace else \
            f"{located.kind}/{name}"
        if before == after:
            return f"no change: {where} already at {after} replicas"
        return f"{verb} {where} {before} → {after}"
    parts = [f"{name} {before} → {after}" if before != after else f"{name} already {after}"
             for name, before, after in moves]
    if all(before == after for _, before, after in moves):
        return f"no change: {located.shown()}: " + ", ".join(parts)
    return f"{verb} {located.shown()}: " + ", ".join(parts)


class RolloutRestart(KubeAction):
    """Restart a Deployment, StatefulSet or DaemonSet like `kubectl rollout restart`, and wait for the rollout."""

    name = "kubernetes.rollout_restart"
    mutates = True
    args_schema = schema({
        **REF_PROPS,
        "wait": {"type": "boolean", "default": True,
                 "description": "Wait until the rollout is complete (kubectl's rollout-status rule)"},
        "timeout": TIMEOUT_PROP,
    }, ["kind", "name"])

    def plan(self, args: dict, ctx: Context) -> str:
        located, live = _restartable(ctx, args)
        located.patch(ctx, _restart_patch(), "strategic", dry_run=True)  # refused? say so now
        then = f", then wait for the rollout (up to {seconds(args.get('timeout')):g}s)" \
            if args.get("wait", True) else ""
        return f"restart {located.shown()} ({_replicas(live)}){then}"

    def run(self, args: dict, ctx: Context) -> Result:
        located, _ = _restartable(ctx, args)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        answer = located.patch(ctx, _restart_patch(stamp), "strategic")
        generation = answer["metadata"].get("generation") or 0
        data = {"restarted_at": stamp, "generation": generation}
        if not args.get("wait", True):
            return Result(ok=True, changed=True, data=data,
                          message=f"restarted {located.shown()} (not waiting for the rollout)")
        def judge(obj: dict | None) -> tuple[bool, str]:
            # judged on the generation the restart returned: an older view never counts
            return (False, "the object is gone") if obj is None else rollout_state(obj, generation)

        try:
            obj, said, waited = wait_until(ctx, located, judge, seconds(args.get("timeout")))
        except RolloutFailed as exc:
            raise ActionError(f"{located.shown()}: rollout failed: {exc}") from None
        data.update(status=obj.get("status"), elapsed_waiting=waited)
        return Result(ok=True, changed=True, data=data,
                      message=f"restarted {located.shown()}: rollout complete, {said} ({waited:g}s)")


def _restartable(ctx, args: dict) -> tuple[Located, dict]:
    require_name(args, "kubernetes.rollout_restart")
    located = locate(ctx, ObjectRef.from_args(args))
    if located.kind not in ROLLOUT_KINDS:
        raise ActionError(f"rollout_restart works on {', '.join(ROLLOUT_KINDS)}, not {located.kind}")
    live = located.read(ctx)
    if (live.get("spec") or {}).get("paused"):
        raise ActionError(f"{located.shown()} is paused: resume it first (kubectl rollout resume), "
                          f"a restart of a paused Deployment never rolls out")
    return located, live


def _restart_patch(stamp: str | None = None) -> dict:
    stamp = stamp or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}


def _replicas(live: dict) -> str:
    spec = live.get("spec") or {}
    if "replicas" in spec:
        return f"{spec['replicas']} replicas"
    return "every pod"
