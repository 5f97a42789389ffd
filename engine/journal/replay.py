"""Rebuild a run's state by replaying its journal: the only source of truth for resume."""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.journal import events as ev
from engine.journal.events import Event


@dataclass
class ReplayState:
    """What the journal says happened.

    ``completed`` maps a step key (``id`` or ``id#item``) to its end event's data
    for every step that must not run again; ``in_doubt`` lists steps that
    started and never ended.
    """

    completed: dict[str, dict] = field(default_factory=dict)
    in_doubt: dict[str, Event] = field(default_factory=dict)
    rescued: dict[str, dict] = field(default_factory=dict)  # block id -> failure it rescued
    started: Event | None = None
    #: (the step's journal reference, its rollback records), in completion order
    undo: list[tuple[dict, list]] = field(default_factory=list)
    rollback_started: Event | None = None


def step_key(step: dict | None) -> str:
    """``id``, ``id@target``, ``id#item`` or ``id@target#item``: one invocation of a step."""
    if not step:
        return ""
    key = step["id"]
    if "target" in step:
        key += f"@{step['target']}"
    if "item" in step:
        key += f"#{step['item']}"
    return key


def step_id_of(key: str) -> str:
    """The step id inside a step key."""
    return key.split("@", 1)[0].split("#", 1)[0]


def replay(events: list[Event]) -> ReplayState:
    state = ReplayState()
    for event in events:
        key = step_key(event.step)
        if event.type == ev.RUN_STARTED:
            state.started = event
        elif event.type == ev.STEP_STARTED:
            state.in_doubt[key] = event
        elif event.type in ev.STEP_ENDS:
            state.in_doubt.pop(key, None)
            if _final(event):
                state.completed[key] = event.data
                if event.type == ev.STEP_SUCCEEDED and event.data.get("rollback"):
                    state.undo.append((event.step, event.data["rollback"]))
            else:
                state.completed.pop(key, None)
        elif event.type == ev.STEP_RESCUED:
            state.rescued[event.step["id"]] = event.data
            state.completed[event.data["key"]] = {"rescued": True, **event.data}
        elif event.type == ev.ROLLBACK_STARTED:
            state.rollback_started = event
    return state


def _final(event: Event) -> bool:
    """A step end that resume must respect: success, skip, or an ignored failure."""
    if event.type in (ev.STEP_SUCCEEDED, ev.STEP_SKIPPED):
        return True
    return event.type == ev.STEP_FAILED and bool(event.data.get("ignored"))
