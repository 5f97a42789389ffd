"""Inventories: targets, groups, shared vars and secret references.

Several ``-i`` files merge in order (later files win per key). Templates see
``targets.NAME`` (the target merged over its group's vars and the top-level
vars), ``groups.NAME`` (target names) and ``secrets.NAME``; top-level ``vars``
also supply the runbook's inputs of the same name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import SourceErrors, UsageError
from engine.source.loader import load_file
from engine.source.schema import schema_errors


@dataclass
class Inventory:
    vars: dict = field(default_factory=dict)
    targets: dict[str, dict] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    secret_refs: dict[str, dict] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)


def load_inventories(paths) -> Inventory:
    """Load and merge inventory files; every schema problem is reported at once."""
    inventory = Inventory()
    errors = []
    for path in paths:
        doc = load_file(path)
        problems = schema_errors(doc, "inventory")
        if problems:
            errors += problems
            continue
        _merge(inventory, doc.data or {})
        inventory.paths.append(str(path))
    if errors:
        raise SourceErrors(errors)
    return inventory


def _merge(inventory: Inventory, data: dict) -> None:
    top_vars = data.get("vars") or {}
    inventory.vars.update(top_vars)
    for group, spec in (data.get("groups") or {}).items():
        spec = spec or {}
        members = inventory.groups.setdefault(group, [])
        for name, target in (spec.get("targets") or {}).items():
            inventory.targets[name] = {**(spec.get("vars") or {}), **(target or {}), "name": name}
            if name not in members:
                members.append(name)
    for name, target in (data.get("targets") or {}).items():
        inventory.targets[name] = {**inventory.targets.get(name, {}), **(target or {}), "name": name}
    inventory.secret_refs.update(data.get("secrets") or {})
    for name, target in inventory.targets.items():
        inventory.targets[name] = {**inventory.vars, **target}


def resolve_secrets(refs: dict[str, dict]) -> dict[str, str]:
    """Read every secret now (run start). A missing source is a usage error (exit 2)."""
    values = {}
    for name, ref in refs.items():
        if "env" in ref:
            if ref["env"] not in os.environ:
                raise UsageError(f"secret '{name}': environment variable {ref['env']} is not set")
            values[name] = os.environ[ref["env"]]
        elif "file" in ref:
            try:
                values[name] = Path(ref["file"]).read_text().strip()
            except OSError as exc:
                raise UsageError(f"secret '{name}': cannot read file {ref['file']}: "
                                 f"{exc.strerror or exc}") from None
        else:
            values[name] = str(ref.get("value", ""))
    return values
