"""Checking an action's arguments against its ``args_schema``: at load time (the compiler
reports each problem at its position) and again after rendering (what templates produced)."""
from __future__ import annotations

from typing import Any

_VALIDATORS: dict[type, Any] = {}


def arg_validator(cls):
    """The compiled JSON Schema validator of an action class (compiled once per process)."""
    validator = _VALIDATORS.get(cls)
    if validator is None:
        from jsonschema import Draft202012Validator

        validator = _VALIDATORS[cls] = Draft202012Validator(cls.args_schema)
    return validator


def check_rendered_args(action_cls, args: Any) -> str | None:
    """First schema violation in run-time (rendered) arguments, as a message, or None."""
    for error in arg_validator(action_cls).iter_errors(args):
        where = ".".join(str(p) for p in error.absolute_path)
        return f"{action_cls.name}: {where + ': ' if where else ''}{error.message}"
    return None
