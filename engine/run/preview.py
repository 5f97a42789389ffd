"""What step mode shows the operator before a step: ``[n/N]``, the rendered arguments
(masked), the plan line, and the RTO budget left for the remaining steps."""
from __future__ import annotations

from engine import actions
from engine.actions.base import ActionError
from engine.guide.operator import StepPreview
from engine.run.invocation import HIDDEN, Invocation, step_ref
from engine.run.runtime import Runtime
from engine.source.model import Step
from engine.templating import TemplateFailure
from engine.unknowns import UnknownValue


class Previews:
    def __init__(self, runtime: Runtime, invocation: Invocation) -> None:
        self.rt = runtime
        self.invocation = invocation
        self._forward = forward_steps(runtime.runbook.steps)  # for [n/N]
        self._ordinals = {s.id: n for n, s in enumerate(self._forward, 1)}

    def of(self, step: Step, scope: dict) -> StepPreview:
        args, plan = self._rendered(step, scope)
        shown = HIDDEN if step.no_log else self.rt.redactor.mask(args)
        plan = f"{step.action} {HIDDEN}" if step.no_log else self.rt.redactor.mask(plan)
        here = self._ordinals.get(step.id, 0)
        remaining = sum(s.expected_duration or 0 for s in self._forward
                        if self._ordinals.get(s.id, 0) >= here
                        and s.id not in self.rt.replay.completed)
        return StepPreview(here, len(self._ordinals), step.action, shown, plan,
                           step.expected_duration, remaining)

    def _rendered(self, step: Step, scope: dict) -> tuple:
        """(arguments, plan line); a loop or a fan-out shows its template."""
        cls = actions.get_action(step.action)
        ref = step_ref(step)
        if isinstance(step.target, str) and step.target in self.rt.scope["targets"]:
            ref["target"] = step.target  # one literal target: its plan can read its settings
        self.invocation.bind(step, ref, scope, None)  # never a stale target from the step before
        try:
            single = step.loop is None and (step.target is None or "target" in ref)
            args = self.invocation.render_args(step, cls, scope) if single else step.args
            plan = self.invocation.plan_line(cls(), args, step) if single else (
                f"{step.action} for each item of the loop or target")
        except (TemplateFailure, UnknownValue) as exc:
            args, plan = step.args, f"(cannot render the arguments yet: {exc})"
        except ActionError as exc:
            args, plan = step.args, f"{step.action}: {exc}"  # seen before the operator answers
        return args, plan


def forward_steps(steps) -> list[Step]:
    """Action steps in order, without rollback steps."""
    out = []
    for step in steps:
        if step.action:
            out.append(step)
        for group in (step.block, step.rescue, step.always, step.children):
            out += forward_steps(group)
    return out
