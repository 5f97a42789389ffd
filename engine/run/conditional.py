"""Steps a rehearsal cannot decide about — a ``when``, a loop or a target list that only the
real run will know — are planned, never dropped: each is listed with what it waits for, so
no change the real run would make is missing from the plan."""
from __future__ import annotations

from typing import Any

from engine import actions
from engine.journal import events as ev
from engine.run.invocation import estimate_data, step_ref
from engine.run.runtime import Runtime
from engine.source.model import Step
from engine.unknowns import UnknownValue


def plan_undecided_step(rt: Runtime, step: Step, ref: dict, unknown: UnknownValue,
                        plan: str | None = None) -> None:
    condition = when_text(step.when) if step.when is not None else None
    estimate = rt.policy.count_planned(step, conditional=condition is not None)
    rt.emit(ev.STEP_PLANNED, ref, {
        "action": step.action, "plan": plan or f"would run if {condition}",
        "conditional": condition, "unknown": str(unknown.unknown),
        "mutates": mutates(step), "expected_duration": step.expected_duration,
        **estimate_data(estimate)})


def plan_undecided_group(rt: Runtime, group: Step, unknown: UnknownValue) -> None:
    """A group whose ``when`` only a real run can decide: each step it would run is
    planned on its own (its rescue steps run only after a failure, as in a known group)."""
    condition = when_text(group.when)
    for step in walk_actions(group, with_rescue=False):
        estimate = rt.policy.count_planned(step, conditional=True)
        rt.emit(ev.STEP_PLANNED, step_ref(step), {
            "action": step.action, "plan": f"would run if {condition}: {step.action}",
            "conditional": condition, "unknown": str(unknown.unknown),
            "mutates": mutates(step), "expected_duration": step.expected_duration,
            **estimate_data(estimate)})


def mutates(step: Step) -> bool:
    if step.mutates is not None:
        return step.mutates
    return bool(step.action) and actions.get_action(step.action).mutates_for(step.args)


def walk_actions(step: Step, with_rescue: bool = True):
    """The action steps inside a group, in order (not its rollbacks)."""
    groups = (step.block, step.rescue, step.always, step.children) if with_rescue else (
        step.block, step.always, step.children)
    for group in groups:
        for child in group:
            if child.action:
                yield child
            yield from walk_actions(child, with_rescue)


def when_text(when: Any) -> str:
    if isinstance(when, list):
        return " and ".join(f"({w})" for w in when)
    return str(when)
