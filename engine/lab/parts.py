"""The lab's optional parts: each family's rehearsal service in a module of its own.

``runbook lab up`` always starts the PostgreSQL primary, its replica and the app
(``engine.lab.sandbox``); ``--with kubernetes,aws,inbox,ssh`` (or ``--all``) adds
parts. A part is a module listed in ``PARTS`` that provides four functions:

``up(lab: LabContext) -> dict``
    Start the part's services and return its state (JSON-serialisable: ports,
    pids, paths, credentials files). Call ``lab.save(state)`` after each process
    starts, so a crash half-way leaves something ``down`` can clean up. Raise
    ``engine.errors.LabError`` with one clear line when it cannot start.
``down(lab: LabContext, state: dict | None) -> list[str]``
    Stop what ``up`` started and remove its runtime files; return the names of
    what was stopped. ``state`` is None when the lab's record was lost: then
    find and stop leftovers under ``lab.runtime_dir`` (never another lab's).
``status(state: dict) -> dict[str, dict]``
    ``{service name: {"running": bool, "pid": int|None, "port": int|None, ...}}``
    plus any ``detail`` string worth one line in ``runbook lab status``.
``inventory(state: dict) -> dict``
    What the part adds to the lab inventory: ``{"vars": {...}, "groups": {...},
    "targets": {...}}`` (each key optional), merged over the base inventory.

Parts start in the order of ``PARTS`` and stop in reverse; a part may read the
state of an earlier one with ``lab.part_state(name)`` (the Kubernetes part's
CloudNativePG operator promotes the PostgreSQL replica).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from engine.errors import LabError

#: name -> module, in start order
PARTS: dict[str, str] = {
    "kubernetes": "engine.lab.kubernetes",
    "aws": "engine.lab.aws",
    "inbox": "engine.lab.inbox",
    "ssh": "engine.lab.ssh",
}


@dataclass
class LabContext:
    """What a part may use: the lab's directories, its state so far, progress output."""

    lab_dir: Path
    runtime_dir: Path
    #: the whole lab record (``lab.json``): the base services and earlier parts
    record: dict
    save: Callable[[dict], None]
    progress: Callable[[str], None] = lambda message: None

    def part_state(self, name: str) -> dict | None:
        if name == "postgres":
            return self.record
        return (self.record.get("parts") or {}).get(name)


def part_names(spec: str | None, all_parts: bool = False) -> list[str]:
    """The parts to start, from ``--with a,b`` or ``--all``, in start order."""
    if all_parts:
        return list(PARTS)
    wanted = [w.strip() for w in (spec or "").split(",") if w.strip()]
    wanted = [w for w in wanted if w != "postgres"]  # always there
    unknown = [w for w in wanted if w not in PARTS]
    if unknown:
        raise LabError(f"unknown lab part(s): {', '.join(unknown)} "
                       f"(known: postgres, {', '.join(PARTS)})")
    return [name for name in PARTS if name in wanted]


def load_part(name: str) -> ModuleType:
    try:
        return importlib.import_module(PARTS[name])
    except ModuleNotFoundError as exc:
        if exc.name == PARTS[name]:
            raise LabError(f"lab part '{name}' is not available in this version") from None
        raise
