"""Starting a run: inputs, inventory, scope, journal, executor — the API the CLI calls."""
from __future__ import annotations

import getpass
import json
import os
import secrets as pysecrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from engine.journal import events as ev
from engine.actions.base import Context
from engine.source.compiler import load_runbook
from engine.errors import UsageError
from engine.run.executor import Executor, RunOptions, RunOutcome
from engine.run.notifications import attach_notifications
from engine.source.inventory import Inventory, load_inventories, resolve_secrets
from engine.journal.store import open_store
from engine.guide.operator import Guide, Terminal, load_answers
from engine.run.signals import InterruptGuard
from engine.source.model import Runbook
from engine.journal.replay import ReplayState
from engine.templating import Redactor, Templar, TemplateFailure


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


@dataclass
class RunHandle:
    run_id: str
    runbook: Runbook
    outcome: RunOutcome
    store: object
    options: RunOptions


def operator_name(option: str | None = None) -> str:
    """``--operator``, else ``RUNBOOK_OPERATOR``, else the login name."""
    if option:
        return option
    if os.environ.get("RUNBOOK_OPERATOR"):
        return os.environ["RUNBOOK_OPERATOR"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{pysecrets.token_hex(3)}"


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
            problems.append(f"input '{name}': expected {spec.type}, got {raw!r}")
            continue
        if spec.choices and value not in spec.choices:
            problems.append(f"input '{name}': {value!r} is not one of {list(spec.choices)}")
            continue
        values[name] = value
    if problems:
        raise UsageError("; ".join(problems))
    return values


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
    _check_start_at(runbook, request.options.start_at)
    secret_values = resolve_secrets(inventory.secret_refs)
    inputs = resolve_inputs(runbook, extra, inventory)
    # -e wins over everything, but an input given with -e keeps its converted type.
    extra.update({name: inputs[name] for name in inputs if name in extra})
    redactor = Redactor(list(secret_values.values())
                        + [str(inputs[n]) for n, s in runbook.inputs.items() if s.secret and n in inputs])
    answers = load_answers(request.answers)  # a bad answers file is exit 2 before any run
    return Prepared(runbook, inventory, extra, secret_values, inputs, redactor, answers)


def _check_start_at(runbook: Runbook, start_at: str | None) -> None:
    if start_at is None:
        return
    ids = [s.id for s in runbook.walk() if s.action]
    if start_at not in ids:
        from engine.source.schema import did_you_mean

        raise UsageError(f"--start-at {start_at!r}: no such step{did_you_mean(start_at, ids)}")


def start_run(request: RunRequest, observers: list[Callable] = ()) -> RunHandle:
    """Validate everything, create the run's journal and execute it."""
    check_step_mode(request.options, request.answers)
    prepared = prepare(request)
    store = open_store(request.state_dir, request.state_url)
    run_id = request.run_id or new_run_id()
    operator = operator_name(request.operator)
    guard = InterruptGuard().install()
    guard.hold()  # a Ctrl-C from here on is delivered inside the executor, and journaled
    try:
        journal, lock = store.create_run(run_id, operator)
    except BaseException:
        guard.uninstall()
        raise
    try:
        for observer in observers:
            journal.subscribe(observer)
        started = _started_data(request, prepared.runbook, prepared.inputs, prepared.extra)
        journal.append(ev.RUN_STARTED, None, prepared.redactor.mask(started))
        outcome = _execute(prepared, journal, request.options, ReplayState(), guard)
    finally:
        guard.finish(keep_handlers=request.exits_after)
        journal.close()
        lock.release()
    return RunHandle(run_id, prepared.runbook, outcome, store, request.options)


def _execute(prepared: "Prepared", journal, options: RunOptions, replay: ReplayState,
             guard: InterruptGuard) -> RunOutcome:
    """Run the executor; ``guard`` holds signals until the executor can journal them."""
    runbook = prepared.runbook
    run_info = {"id": journal.run_id, "operator": journal.operator, "dry_run": options.dry_run,
                "runbook": runbook.name, "host": journal.host}
    scope = build_scope(runbook, prepared.inventory, prepared.inputs, prepared.extra,
                        prepared.secrets, run_info)
    ctx = Context(dry_run=options.dry_run, redactor=prepared.redactor,
                  state_dir=journal.directory, run_id=journal.run_id, operator=journal.operator)
    journal.guard = guard
    attach_notifications(runbook, journal, scope, ctx, options.dry_run)  # the runbook's own
    try:
        guide = make_guide(journal, options, prepared.answers, runbook.rto)
        executor = Executor(runbook, journal, ctx, scope, prepared.extra, options,
                            prepared.redactor, replay, guide)
        return executor.run(guard=guard)
    finally:
        journal.guard = None


def make_guide(journal, options: RunOptions, answers: dict | None, rto) -> Guide:
    """The operator side: a terminal when stdin is one, scripted answers when given."""
    import sys

    terminal = Terminal() if sys.stdin.isatty() and not options.dry_run else None
    started = journal.events[0].ts if journal.events else None
    guide = Guide(journal.events, step_mode=options.step_mode, answers=answers,
                  terminal=terminal, rto=rto)
    if started:
        guide.run_started = _epoch(started)
    return guide


def check_step_mode(options: RunOptions, answers: str | None) -> None:
    """``--step`` needs someone to answer: a terminal or an answers file (exit 2 otherwise)."""
    import sys

    if options.step_mode and not answers and not sys.stdin.isatty():
        raise UsageError("--step needs an interactive terminal or --answers FILE "
                         "(stdin is not a terminal)")


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _started_data(request: RunRequest, runbook: Runbook, inputs: dict, extra: dict) -> dict:
    options = request.options
    return {
        "runbook": {"path": str(Path(runbook.path).resolve()), "name": runbook.name,
                    "sha256": runbook.fingerprint, "source": Path(runbook.path).read_text()},
        "inventories": [str(Path(p).resolve()) for p in request.inventories],
        "includes": list(runbook.includes),
        "fingerprints": fingerprints([runbook.path, *runbook.includes, *request.inventories]),
        "inputs": inputs, "extra_vars": extra, "extra_args": list(request.extra),
        "dry_run": options.dry_run, "strict": options.strict, "tags": sorted(options.tags),
        "skip_tags": sorted(options.skip_tags), "start_at": options.start_at,
        "on_failure": options.on_failure, "step_mode": options.step_mode, "limit": options.limit,
        "rto": runbook.rto, "rpo": runbook.rpo, "cwd": os.getcwd(),
        "steps": sum(1 for s in runbook.walk() if s.action),
    }


def fingerprints(paths) -> dict[str, str]:
    """SHA-256 of each file's bytes, by absolute path."""
    import hashlib

    return {str(Path(p).resolve()): hashlib.sha256(Path(p).read_bytes()).hexdigest()
            for p in paths}
