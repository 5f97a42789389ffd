"""Preparing a run: everything that can fail with exit 2 happens here, before any journal
exists — the inventory, ``-e`` values, the runbook, inputs, secrets and the answers file."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.errors import UsageError
from engine.guide.operator import load_answers
from engine.run.options import RunOptions
from engine.run.secret_inputs import Resupplied, apply_resupplied
from engine.source.compiler import load_runbook
from engine.source.inventory import Inventory, load_inventories, resolve_secrets
from engine.source.model import Runbook
from engine.secrets import Redactor
from engine.templating import Templar, TemplateFailure


@dataclass
class RunRequest:
    runbook: str
    inventories: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    options: RunOptions = field(default_factory=RunOptions)
    run_id: str | None = None
    state_dir: str | None = None
    operator: str | None = None
    answers: str | None = None
    state_url: str | None = None
    #: the caller exits right after the run (the CLI): signals stay ignored at the end
    exits_after: bool = False
    #: a resumed run's runbook fingerprint: an unchanged file skips re-validation
    trusted_sha256: str | None = None
    #: the id of the drill this run belongs to (``runbook drill``), recorded at the start
    drill: str | None = None
    #: a resume: secret inputs given again (never journaled in clear), see secret_inputs.py
    resupplied: Resupplied | None = None


@dataclass
class Prepared:
    runbook: Runbook
    inventory: Inventory
    extra: dict
    secrets: dict
    inputs: dict
    redactor: Redactor
    answers: dict | None = None  # the parsed --answers file


def prepare(request: RunRequest) -> Prepared:
    """Everything that can fail with exit 2 happens here, before any journal exists."""
    inventory = load_inventories(request.inventories)
    extra = parse_extra_vars(request.extra)
    runbook = load_runbook(request.runbook, known_names=set(inventory.vars) | set(extra),
                           trusted_sha256=request.trusted_sha256)
    if request.resupplied is not None:
        extra = apply_resupplied(runbook, extra, request.resupplied, request.run_id or "")
    _check_start_at(runbook, request.options.start_at)
    secret_values = resolve_secrets(inventory.secret_refs)
    inputs = resolve_inputs(runbook, extra, inventory)
    # -e wins over everything, but an input given with -e keeps its converted type.
    extra.update({name: inputs[name] for name in inputs if name in extra})
    redactor = Redactor(list(secret_values.values())
                        + [str(inputs[n]) for n, s in runbook.inputs.items() if s.secret and n in inputs]
                        + literal_sensitive_args(runbook))
    answers = load_answers(request.answers)  # a bad answers file is exit 2 before any run
    return Prepared(runbook, inventory, extra, secret_values, inputs, redactor, answers)


def _check_start_at(runbook: Runbook, start_at: str | None) -> None:
    if start_at is None:
        return
    ids = [s.id for s in runbook.walk() if s.action]
    if start_at not in ids:
        from engine.source.schema import did_you_mean

        raise UsageError(f"--start-at {start_at!r}: no such step{did_you_mean(start_at, ids)}")


def check_step_mode(options: RunOptions, answers: str | None) -> None:
    """``--step`` needs someone to answer: a terminal or an answers file (exit 2 otherwise)."""
    if options.step_mode and not answers and not sys.stdin.isatty():
        raise UsageError("--step needs an interactive terminal or --answers FILE "
                         "(stdin is not a terminal)")


def parse_extra_vars(items: list[str]) -> dict:
    """``-e k=v`` (a string, as in Ansible; typed inputs convert it), ``-e @file.yaml`` or JSON."""
    values: dict = {}
    for item in items:
        if item.startswith("@"):
            values.update(_vars_file(item[1:]))
        elif item.lstrip().startswith("{"):
            try:
                loaded = json.loads(item)
            except ValueError as exc:
                raise UsageError(f"-e {item!r}: not valid JSON: {exc}") from None
            values.update(loaded)
        elif "=" in item:
            key, _, raw = item.partition("=")
            if not key.isidentifier():
                raise UsageError(f"-e {item!r}: {key!r} is not a valid variable name")
            values[key] = raw
        else:
            raise UsageError(f"-e {item!r}: expected NAME=VALUE, @FILE or a JSON object")
    return values


def _vars_file(path: str) -> dict:
    from engine.source.loader import load_file

    data = load_file(path).data
    if not isinstance(data, dict):
        raise UsageError(f"-e @{path}: the file must hold a mapping of names to values")
    return data


def _convert(kind: str, value: Any) -> Any:
    if kind == "string":
        return value if isinstance(value, str) else str(value)
    if kind in ("integer", "number", "boolean", "list", "object") and isinstance(value, str):
        value = yaml.safe_load(value) if value.strip() else value
    checks = {"integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "boolean": lambda v: isinstance(v, bool), "list": lambda v: isinstance(v, list),
              "object": lambda v: isinstance(v, dict)}
    if not checks[kind](value):
        raise ValueError(f"expected {kind}")
    return value


def resolve_inputs(runbook: Runbook, extra: dict, inventory: Inventory) -> dict:
    """Each input from -e, else inventory vars, else its default; checked and converted."""
    values, problems = {}, []
    for name, spec in runbook.inputs.items():
        if name in extra:
            raw = extra[name]
        elif name in inventory.vars:
            raw = inventory.vars[name]
        elif spec.has_default:
            raw = spec.default
        else:
            if spec.required:
                problems.append(f"missing required input '{name}' (give it with -e {name}=VALUE)")
            continue
        try:
            value = _convert(spec.type, raw)
        except (ValueError, yaml.YAMLError):
            shown = "a secret value (not shown)" if spec.secret else repr(raw)
            problems.append(f"input '{name}': expected {spec.type}, got {shown}")
            continue
        if spec.choices and value not in spec.choices:
            shown = "the secret value given" if spec.secret else repr(value)
            problems.append(f"input '{name}': {shown} is not one of {list(spec.choices)}")
            continue
        values[name] = value
    if problems:
        raise UsageError("; ".join(problems))
    return values


def input_sources(runbook: Runbook, extra: dict, inventory: Inventory) -> dict[str, str]:
    """Where each input's value came from — so an inventory var that silently overrides a
    default is in plain sight (the run header and ``run.started`` show it)."""
    sources = {}
    for name, spec in runbook.inputs.items():
        if name in extra:
            sources[name] = "-e"
        elif name in inventory.vars:
            sources[name] = "inventory vars"
        elif spec.has_default:
            sources[name] = "default"
    return sources


def build_scope(runbook: Runbook, inventory: Inventory, inputs: dict, extra: dict,
                secret_values: dict, run_info: dict) -> dict:
    """Variables, lowest first: inventory vars < runbook vars < inputs < facts < -e."""
    scope: dict = dict(inventory.vars)
    scope.update(targets=render_targets(inventory, secret_values), groups=inventory.groups,
                 secrets=secret_values, run=run_info)
    scope.update(inputs)
    templar = Templar()
    for name, value in runbook.vars.items():
        try:
            scope[name] = templar.render(value, scope)
        except TemplateFailure as exc:
            raise UsageError(f"{runbook.path}: var '{name}': {exc}") from None
    scope.update(inputs)
    scope.update(extra)
    return scope


def render_targets(inventory: Inventory, secret_values: dict) -> dict:
    """Inventory targets with their templates rendered (``webhook: "{{ secrets.slack }}"``),
    so an action reads final settings from ``ctx.target``."""
    templar = Templar()
    scope = {**inventory.vars, "secrets": secret_values}
    rendered = {}
    for name, target in inventory.targets.items():
        try:
            rendered[name] = templar.render(target, scope)
        except TemplateFailure as exc:
            raise UsageError(f"inventory target '{name}': {exc}") from None
    return rendered


def literal_sensitive_args(runbook: Runbook) -> list[str]:
    """Values written literally in the runbook for arguments an action marks sensitive
    (``sensitive_args``): masked from the start, in the journaled source too."""
    from engine import actions

    found = []
    for step in runbook.walk():
        if not step.action or not isinstance(step.args, dict):
            continue
        for key in actions.get_action(step.action).sensitive_args:
            value = step.args.get(key)
            if isinstance(value, str) and value and "{{" not in value:
                found.append(value)
    return found
