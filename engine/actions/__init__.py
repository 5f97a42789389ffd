"""The action registry.

Built-in actions are listed here by name and module, and imported only when a
runbook uses them, so ``runbook --help`` and ``runbook validate`` never pay for
boto3, kubernetes or psycopg. Third-party packages add actions through the
entry-point group ``runbook.actions`` (name = action name, value =
``module:Class``), also loaded lazily.
"""
from __future__ import annotations

import difflib
import importlib
from functools import lru_cache

from engine.actions.base import Action, ActionError, Context, Result

__all__ = ["Action", "ActionError", "Context", "Result", "get_action", "action_names",
           "suggest", "UnknownAction"]

ENTRY_POINT_GROUP = "runbook.actions"

# name -> "module:Class". Keep sorted by family.
BUILTINS: dict[str, str] = {
    "command": "engine.actions.core:Command",
    "shell": "engine.actions.core:Shell",
    "assert": "engine.actions.core:Assert",
    "fail": "engine.actions.core:Fail",
    "set_fact": "engine.actions.core:SetFact",
    "pause": "engine.actions.core:Pause",
    "wait_for": "engine.actions.core:WaitFor",
    "debug": "engine.actions.core:Debug",
    "manual": "engine.actions.operator:Manual",
    "approve": "engine.actions.operator:Approve",
    "file.checksum": "engine.actions.files:Checksum",
    "file.exists": "engine.actions.files:Exists",
    "http.check": "engine.actions.http:Check",
    "http.request": "engine.actions.http:Request",
}


#: Families that live in a package of their own (``engine/actions/<family>/``). Each
#: package's ``__init__`` holds ``ACTIONS = {"family.verb": "module:Class"}`` and imports
#: nothing heavy, so a new family adds one line here and touches nothing else.
FAMILY_PACKAGES: tuple[str, ...] = (
    "engine.actions.postgres",
    "engine.actions.kubernetes",
    "engine.actions.aws",
    "engine.actions.notify",
    "engine.actions.ssh",
)


@lru_cache(maxsize=1)
def _builtins() -> dict[str, str]:
    """Every built-in action: the ones listed above and each family package's own."""
    names = dict(BUILTINS)
    for package in FAMILY_PACKAGES:
        names.update(importlib.import_module(package).ACTIONS)
    return names


class UnknownAction(LookupError):
    """No built-in or plug-in action has this name."""


@lru_cache(maxsize=1)
def _entry_points() -> dict[str, object]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def action_names() -> list[str]:
    """Every known action name, built-in and plug-in, sorted."""
    names = set(_builtins()) | set(_entry_points())
    return sorted(names)


def is_known(name: str) -> bool:
    return name in _builtins() or name in _entry_points()


@lru_cache(maxsize=None)
def get_action(name: str) -> type[Action]:
    """The action class registered under ``name`` (imports its module now)."""
    builtins = _builtins()
    if name in builtins:
        module, _, attr = builtins[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownAction(name)
    return ep.load()


def suggest(name: str) -> str | None:
    """The closest known action name, for 'did you mean ...?'."""
    match = difflib.get_close_matches(name, action_names(), n=1, cutoff=0.6)
    return match[0] if match else None
