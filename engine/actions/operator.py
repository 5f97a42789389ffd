"""Steps done by people: manual checklists and approvals.

Both talk to the operator through ``ctx.guide`` (engine.guide.operator); without a
terminal or scripted answers they pause the run (exit 3) and ``runbook
resume`` continues. In a dry-run they are listed, not asked (mutates=True
means the executor only plans them).
"""
from __future__ import annotations

from engine.actions.base import Action, ActionError, Context, Result
from engine.durations import parse_duration


class Manual(Action):
    """A step a person performs: instructions, a checklist confirmed item by item, evidence."""

    name = "manual"
    mutates = True
    args_schema = {
        "type": "object", "additionalProperties": False, "required": ["instructions"],
        "properties": {
            "instructions": {"type": "string", "description": "What to do (markdown)."},
            "checklist": {"type": "array", "items": {"type": "string"},
                          "description": "Items the operator confirms one by one."},
            "evidence": {"enum": ["required", "optional", "none"],
                         "description": "Ask for a ticket or link as proof."},
        },
    }

    def plan(self, args, ctx: Context) -> str:
        items = args.get("checklist") or []
        first = str(args["instructions"]).strip().splitlines()[0] if args["instructions"] else ""
        return f"operator: {first}" + (f" ({len(items)} checklist items)" if items else "")

    def run(self, args, ctx: Context) -> Result:
        data = ctx.guide.manual(ctx.step, ctx.step_ref, args)
        return Result(ok=True, changed=True, data=data, message="confirmed by the operator")


class Approve(Action):
    """Wait for approvals: named approvers, a quorum of distinct people, separation of duty."""

    name = "approve"
    mutates = True
    args_schema = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "approvers": {"type": "array", "items": {"type": "string"},
                          "description": "Names allowed to approve (empty: anyone)."},
            "min_approvals": {"type": "integer", "minimum": 1,
                              "description": "Distinct people needed (default 1)."},
            "separate_duty": {"type": "boolean",
                              "description": "The operator who started the run cannot approve."},
            "timeout": {"type": ["string", "number"], "description": "How long to wait (duration)."},
            "on_timeout": {"enum": ["fail", "continue"], "description": "fail (default) or continue."},
            "message": {"type": "string", "description": "What the approvers are asked."},
        },
    }

    def plan(self, args, ctx: Context) -> str:
        who = ", ".join(args.get("approvers") or []) or "anyone"
        return f"wait for {args.get('min_approvals', 1)} approval(s) from {who}"

    def run(self, args, ctx: Context) -> Result:
        from engine.control import ApprovalTimeout

        args = dict(args)
        if args.get("timeout") is not None:
            args["timeout_seconds"] = parse_duration(args["timeout"])
        try:
            data = ctx.guide.approval(ctx.step, ctx.step_ref, args, ctx.run_id)
        except ApprovalTimeout as exc:
            raise ActionError(str(exc)) from None
        names = ", ".join(data.get("approved_by", []))
        return Result(ok=True, changed=False, data=data, message=f"approved by {names}")
