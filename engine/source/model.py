"""The runbook as frozen dataclasses: what the executor interprets.

Built by ``engine.source.compiler`` from a validated YAML document. Arguments and
expressions stay raw (templates are rendered at run time, in the scope of the
moment); everything structural is checked already.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from engine.errors import Pos

class StepKind(Enum):
    ACTION = "action"
    BLOCK = "block"
    PARALLEL = "parallel"


@dataclass(frozen=True)
class Verify:
    that: tuple[str, ...]
    message: str = ""
    retries: int = 0
    delay: float = 1.0
    pos: Pos | None = None


@dataclass(frozen=True)
class Step:
    """One step. ``path`` is its place in the tree (``"3"``, ``"3.block.1"``);
    ``id`` is unique in the runbook and is what operators and journals name.
    """

    id: str
    path: str
    name: str
    kind: StepKind
    pos: Pos
    action: str = ""
    args: Any = None
    description: str = ""
    when: Any = None
    loop: Any = None
    loop_var: str = "item"
    loop_parallel: int = 1
    register: str = ""
    retries: int = 0
    delay: float = 1.0
    until: str | None = None
    timeout: float | None = None
    ignore_errors: bool = False
    verify: tuple[Verify, ...] = ()
    tags: frozenset[str] = frozenset()
    no_log: bool = False
    idempotent: bool = False
    mutates: bool | None = None  # None: the action's own flag
    expected_duration: float | None = None
    vars: dict = field(default_factory=dict)
    rollback: tuple["Step", ...] = ()
    block: tuple["Step", ...] = ()
    rescue: tuple["Step", ...] = ()
    always: tuple["Step", ...] = ()
    children: tuple["Step", ...] = ()  # the steps of a ``parallel:`` group
    #: inventory target(s) the step acts on: a target name, a group name or a list
    #: of them (templates allowed); None: the machine running the engine
    target: Any = None
    #: in a dry-run: "run" or "plan" overrides the engine's choice; None: the engine decides
    rehearse: str | None = None

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def label(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class Input:
    name: str
    type: str = "string"
    description: str = ""
    required: bool = False
    default: Any = None
    has_default: bool = False
    choices: tuple = ()
    secret: bool = False
    pos: Pos | None = None


@dataclass(frozen=True)
class Runbook:
    name: str
    path: str
    steps: tuple[Step, ...]
    description: str = ""
    tier: str = ""
    owner: str = ""
    rto: float | None = None
    rpo: float | None = None
    inputs: dict[str, Input] = field(default_factory=dict)
    vars: dict = field(default_factory=dict)
    on_failure: str = "stop"
    rollback_strategy: str = "on_failure"
    drill: dict | None = None  # how `runbook drill` exercises it (lab parts, inputs, answers)
    fingerprint: str = ""
    includes: tuple[str, ...] = ()  # absolute paths of included step and message files
    #: the communication plan (engine.source.messages): Message by name, Notifications
    messages: dict = field(default_factory=dict)
    notifications: tuple = ()

    def walk(self):
        """Every step, depth first, including nested and rollback steps."""
        yield from walk_steps(self.steps)


def walk_steps(steps):
    for step in steps:
        yield step
        for group in (step.block, step.rescue, step.always, step.children, step.rollback):
            yield from walk_steps(group)
