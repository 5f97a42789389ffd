"""JSON Schemas of runbooks and inventories, and their errors mapped to source positions.

``runbook_schema()`` composes the base runbook schema with every registered
action's ``args_schema``: that is what ``runbook schema`` prints and what
``schemas/runbook.schema.json`` holds, for editors (yaml-language-server).
Validation itself uses the *structural* variant (steps may carry any key) and
leaves per-step checks to ``engine.source.compiler``, which gives sharper messages
("unknown action 'comand', did you mean 'command'?") than a ``oneOf`` could.
"""
from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Iterator

from engine.errors import SourceError
from engine.source.loader import Document
from engine.durations import DURATION_HELP, DURATION_PATTERN
from engine.source.messages_schema import (INCLUDE_MESSAGES_SCHEMA, MESSAGES_SCHEMA,
                                          NOTIFICATIONS_SCHEMA)

SCHEMA_ID = "https://runbook-engine.dev/schemas/runbook.schema.json"
INVENTORY_SCHEMA_ID = "https://runbook-engine.dev/schemas/inventory.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

STEP_KEYWORDS: dict[str, dict] = {
    "name": {"type": "string", "description": "What the step does, shown to the operator."},
    "id": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
           "description": "Unique id (default: slug of the name). Used by --start-at, answers, resume."},
    "description": {"type": "string", "description": "Markdown shown in guided mode."},
    "when": {"$ref": "#/$defs/condition", "description": "Run only if this expression holds."},
    "loop": {"type": ["array", "string"], "description": "Items to run the step for (a list or a template)."},
    "loop_var": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$",
                 "description": "Name of the loop variable (default: item)."},
    "parallel": {"description": "With loop: run N iterations at once. Without: a list of steps run concurrently.",
                 "oneOf": [{"type": "integer", "minimum": 1},
                           {"type": "array", "items": {"$ref": "#/$defs/step"}}]},
    "register": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$",
                 "description": "Save the result under this name."},
    "retries": {"type": "integer", "minimum": 0, "description": "Extra attempts when the step fails or `until` is false."},
    "delay": {"$ref": "#/$defs/duration", "description": "Pause between attempts (default 1s)."},
    "until": {"type": "string", "description": "Repeat until this expression holds (uses `result`)."},
    "timeout": {"$ref": "#/$defs/duration", "description": "Fail the step (and kill its processes) after this long."},
    "ignore_errors": {"type": "boolean", "description": "A failure is recorded but does not stop the run."},
    "verify": {"type": "array", "items": {"$ref": "#/$defs/verify"},
               "description": "Checks evaluated after the action; a failed check fails the step."},
    "tags": {"type": ["array", "string"], "items": {"type": "string"}, "description": "Labels for --tags/--skip-tags."},
    "no_log": {"type": "boolean", "description": "Hide arguments and results from every output."},
    "idempotent": {"type": "boolean", "description": "Safe to run twice; an in-doubt step is re-run on resume."},
    "mutates": {"type": "boolean", "description": "Override the action's own flag (e.g. a read-only command)."},
    "expected_duration": {"$ref": "#/$defs/duration", "description": "Estimate used by the dry-run plan and the RTO clock."},
    "vars": {"type": "object", "description": "Variables for this step only."},
    "rollback": {"type": "array", "items": {"$ref": "#/$defs/step"},
                 "description": "Steps that undo this one, run by a rollback."},
    "block": {"type": "array", "items": {"$ref": "#/$defs/step"}, "description": "A group of steps."},
    "include": {"type": "string", "minLength": 1,
                "description": "Steps from another file (a YAML list of steps), path relative "
                               "to this file; `vars`, `when` and `tags` apply to all of them."},
    "rehearse": {"enum": ["run", "plan"],
                 "description": "In a dry-run: `run` runs this step for real (a read-only check the "
                                "engine would plan), `plan` only plans it (a probe of what a planned "
                                "step changes). Without it the engine decides."},
    "target": {"type": ["string", "array"], "items": {"type": "string"},
               "description": "Inventory target(s) the step acts on: a target, a group, or a list; "
                              "with several, the step runs once per target (`parallel: N` for forks)."},
    "rescue": {"type": "array", "items": {"$ref": "#/$defs/step"}, "description": "Run when a step in `block` fails."},
    "always": {"type": "array", "items": {"$ref": "#/$defs/step"}, "description": "Run after `block` whatever happened."},
}

DRILL_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "description": "How `runbook drill` exercises this runbook against `runbook lab up`.",
    "properties": {
        "lab": {"type": "array", "items": {"enum": ["postgres", "kubernetes", "aws", "inbox", "ssh"]},
                "description": "Lab parts it needs beyond the PostgreSQL primary, replica and app."},
        "inputs": {"type": "object", "description": "Input values (templates over `lab` — the lab "
                                                   "inventory's vars, `lab.targets` — and `setup`)."},
        "answers": {"type": "object", "description": "Scripted operator answers, as --answers."},
        "setup": {"type": "array", "description": "Runbooks run for real first (results in "
                                                  "`setup[N].STEP_ID`).",
                  "items": {"type": "object", "required": ["runbook"], "additionalProperties": False,
                            "properties": {"runbook": {"type": "string"},
                                           "inputs": {"type": "object"}}}},
    },
}

INPUT_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["string", "integer", "number", "boolean", "list", "object"],
                 "description": "Type the value is converted to and checked against."},
        "description": {"type": "string"},
        "required": {"type": "boolean"},
        "default": {"description": "Value when neither -e nor the inventory gives one."},
        "choices": {"type": "array", "description": "Allowed values."},
        "secret": {"type": "boolean", "description": "Mask the value in every output."},
    },
}

VERIFY_SCHEMA = {
    "oneOf": [
        {"type": "string", "description": "An expression that must hold."},
        {"type": "object", "additionalProperties": False, "required": ["that"],
         "properties": {
             "that": {"$ref": "#/$defs/condition"},
             "message": {"type": "string", "description": "Shown when the check fails."},
             "retries": {"type": "integer", "minimum": 0,
                         "description": "Re-probe this many times (read-only steps re-run their action)."},
             "delay": {"$ref": "#/$defs/duration"},
         }},
    ]
}


def _base_schema(step_schema: dict) -> dict:
    return {
        "$schema": DIALECT,
        "$id": SCHEMA_ID,
        "title": "Runbook",
        "description": "A disaster-recovery or incident runbook for runbook-engine.",
        "type": "object",
        "required": ["name", "steps"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "Title of the runbook."},
            "description": {"type": "string"},
            "tier": {"type": "string", "description": "Free-text criticality label."},
            "owner": {"type": "string", "description": "Team or rota that owns the runbook."},
            "rto": {"$ref": "#/$defs/duration", "description": "Recovery time objective."},
            "rpo": {"$ref": "#/$defs/duration", "description": "Recovery point objective."},
            "rollback_strategy": {
                "enum": ["on_failure", "always", "never"],
                "description": "As in Chaos Toolkit: when recorded rollbacks run. on_failure "
                               "(default): when the run fails and on_failure/--on-failure says "
                               "rollback, or the operator presses b; always: also after a "
                               "successful run (a drill that must leave things as it found them); "
                               "never: not even then."},
            "on_failure": {"enum": ["stop", "rollback"],
                           "description": "What to do when the run fails and nothing rescues it."},
            "drill": DRILL_SCHEMA,
            "inputs": {"type": "object", "additionalProperties": {"$ref": "#/$defs/input"},
                       "propertyNames": {"$ref": "#/$defs/name"},
                       "description": "Values the runbook needs from outside (-e, inventory vars, default)."},
            "vars": {"type": "object", "propertyNames": {"$ref": "#/$defs/name"},
                     "description": "Variables (templates allowed)."},
            "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"},
                      "description": "The steps, run in order."},
            "messages": MESSAGES_SCHEMA,
            "include_messages": INCLUDE_MESSAGES_SCHEMA,
            "notifications": NOTIFICATIONS_SCHEMA,
        },
        "$defs": {
            "duration": {"type": ["string", "number"], "pattern": DURATION_PATTERN,
                         "minimum": 0, "errorMessage": f"must be {DURATION_HELP}",
                         "description": f"Seconds, or {DURATION_HELP}."},
            "condition": {"type": ["string", "boolean", "array"], "items": {"type": "string"},
                          "description": "A Jinja expression without braces, or a list that must all hold."},
            # YAML keys may be numbers or null; a variable name must be a string.
            "name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$",
                     "description": "A variable name: letters, digits and _, not starting with a digit."},
            "input": INPUT_SCHEMA,
            "verify": VERIFY_SCHEMA,
            "step": step_schema,
        },
    }


def structural_schema() -> dict:
    """Runbook schema whose steps may carry any key (action keys are checked by the compiler)."""
    return _base_schema({"type": "object", "properties": STEP_KEYWORDS})


def runbook_schema() -> dict:
    """The composed schema: base plus every registered action's ``args_schema``."""
    from engine.actions import action_names, get_action

    actions = {name: get_action(name) for name in action_names()}
    properties = dict(STEP_KEYWORDS)
    for name, action in actions.items():
        schema = dict(action.args_schema)
        schema.setdefault("description", action.summary())
        properties[name] = schema
    one_action = [{"required": [name]} for name in actions]
    one_action += [{"required": ["block"]}, {"required": ["include"]}, {"required": ["parallel"], "properties": {
        "parallel": {"type": "array"}}}]
    # oneOf, not anyOf: a step runs exactly one action (or is one group).
    step = {"type": "object", "title": "Step",
            "description": "One action key (or block/parallel) plus keywords.",
            "additionalProperties": False, "properties": properties, "oneOf": one_action,
            "dependentRequired": {"rescue": ["block"], "always": ["block"]}}
    return _base_schema(step)


def inventory_schema() -> dict:
    target = {"type": "object", "description": "A target: any keys (dsn, url, host, ...)."}
    secret = {
        "type": "object", "additionalProperties": False,
        "description": "Where a secret comes from, resolved at run start.",
        "properties": {"env": {"type": "string", "description": "Environment variable name."},
                       "file": {"type": "string", "description": "File whose content (stripped) is the secret."},
                       "value": {"type": "string", "description": "Literal (for labs only)."}},
        "minProperties": 1, "maxProperties": 1,
        "errorMessage": "a secret takes exactly one of env, file or value",
    }
    return {
        "$schema": DIALECT,
        "$id": INVENTORY_SCHEMA_ID,
        "title": "Inventory",
        "description": "Targets, groups, variables and secret references for runbook-engine.",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "vars": {"type": "object", "description": "Variables for every target; also supply runbook inputs."},
            "groups": {"type": "object", "description": "Named groups of targets (templates see groups.NAME).",
                       "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "properties": {"vars": {"type": "object", "description": "Variables for the group's targets."},
                               "targets": {"type": "object", "additionalProperties": target,
                                           "description": "The group's targets by name."}}}},
            "targets": {"type": "object", "additionalProperties": target,
                        "description": "Targets by name (templates see targets.NAME)."},
            "secrets": {"type": "object", "additionalProperties": secret,
                        "description": "Secret references by name (templates see secrets.NAME); never logged."},
        },
    }


@lru_cache(maxsize=None)
def _validator(kind: str):
    from jsonschema import Draft202012Validator

    if kind == "fragment":  # an included file: a list of steps, checked like a runbook's
        base = structural_schema()
        schema = {"$schema": DIALECT, "type": "array", "items": {"$ref": "#/$defs/step"},
                  "$defs": base["$defs"]}
    else:
        schema = structural_schema() if kind == "runbook" else inventory_schema()
    return Draft202012Validator(schema)


def schema_errors(doc: Document, kind: str = "runbook") -> list[SourceError]:
    """Every schema violation in ``doc``, each at its value's position."""
    data = doc.data
    if not isinstance(data, dict):
        what = "empty" if data is None else f"a {type(data).__name__}"
        return [doc.error((), f"a {kind} must be a mapping at the top level, this file is {what}")]
    return [err for error in _validator(kind).iter_errors(data) for err in _convert(doc, error)]


def fragment_errors(doc: Document) -> list[SourceError]:
    """Schema violations in an included file: a list of steps."""
    data = doc.data
    if not isinstance(data, list) or not data:
        what = "empty" if not data else f"a {type(data).__name__}"
        return [doc.error((), f"an included file must be a list of steps, this file is {what}")]
    return [err for error in _validator("fragment").iter_errors(data) for err in _convert(doc, error)]


def document_errors(doc: Document, schema: dict) -> list[SourceError]:
    """Every violation of ``schema`` in ``doc`` (a file included for its own kind of content)."""
    from jsonschema import Draft202012Validator

    return [err for error in Draft202012Validator(schema).iter_errors(doc.data)
            for err in _convert(doc, error)]


def _convert(doc: Document, error) -> Iterator[SourceError]:
    path = tuple(error.absolute_path)
    if error.validator in ("oneOf", "anyOf") and error.context and not combinator_message(error):
        yield from _convert(doc, pick_branch(error))
        return
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        for key in error.instance:
            if key not in known:
                yield doc.error(path + (key,), f"unknown key '{key}'{did_you_mean(key, known)}", key=True)
        return
    if "propertyNames" in error.schema_path:
        yield doc.error(path + (error.instance,), f"{_describe(path)}: invalid name {error.instance!r}: "
                        "use letters, digits and '_', not starting with a digit", key=True)
        return
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        where = f" in {_describe(path)}" if path else ""
        yield doc.error(path, f"missing required key '{missing}'{where}")
        return
    message = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    if message and "duration" in message and _is_template(error.instance):
        return  # the compiler says "a duration cannot be a template", which is the real problem
    text = f"must be {DURATION_HELP}, got {error.instance!r}" if message and "duration" in message else (
        message or combinator_message(error) or error.message)
    yield doc.error(path, f"{_describe(path)}: {text}" if path else text)


def _is_template(value) -> bool:
    return isinstance(value, str) and value.startswith(("{{", "{%"))


def pick_branch(error):
    """The telling error inside a failed ``oneOf``/``anyOf``: one from a branch whose
    type fits the value (a mapping's mistake, not "is not of type 'array'")."""
    from jsonschema.exceptions import best_match

    fitting = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
    return best_match(fitting or error.context)


_TYPE_WORDS = {"array": "a list", "object": "a mapping", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "null"}


def combinator_message(error) -> str | None:
    """Plain words for ``oneOf``/``anyOf``/``not`` failures that jsonschema words as schema dumps."""
    branches = error.validator_value if isinstance(error.validator_value, list) else []
    if error.validator == "not" and set(error.validator_value or {}) == {"required"}:
        names = " and ".join(f"'{n}'" for n in error.validator_value["required"])
        return f"{names} cannot be used together"
    if error.validator not in ("oneOf", "anyOf"):
        return None
    if branches and all(isinstance(b, dict) and set(b) == {"required"} for b in branches):
        names = " or ".join(f"'{n}'" for b in branches for n in b["required"])
        return f"needs one of {names}" if error.context else f"give only one of {names}"
    roots = [e for e in error.context if not e.relative_path]
    if roots and len(roots) == len(error.context) and all(e.validator == "type" for e in roots):
        wanted = []
        for e in roots:
            for name in e.validator_value if isinstance(e.validator_value, list) else [e.validator_value]:
                if _TYPE_WORDS.get(name, name) not in wanted:
                    wanted.append(_TYPE_WORDS.get(name, name))
        return f"must be {', '.join(wanted[:-1]) + ' or ' if len(wanted) > 1 else ''}{wanted[-1]}, " \
               f"got {_yaml_type(error.instance)}"
    return None


def _yaml_type(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    names = {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number"}
    return next((word for kind, word in names.items() if isinstance(value, kind)), "null")


def _describe(path: tuple) -> str:
    parts = []
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else ("." if parts else "") + str(part))
    return "".join(parts)


def did_you_mean(word: str, candidates) -> str:
    # YAML keys need not be strings (``1:``, ``null:``); only names can be suggested.
    names = [c for c in candidates if isinstance(c, str)]
    match = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""
