"""Validated YAML document -> ``Runbook``, collecting every problem on the way.

Checks beyond the JSON Schema live here, each a small function that yields
``SourceError``s at the offending value's own line: unknown actions and
keywords (with did-you-mean), several actions in one step, bad action
arguments, durations, duplicate ids, ``rescue``/``always`` without ``block``
and template names defined nowhere.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

from engine import actions
from engine.actions.arguments import arg_validator
from engine.checksums import sha256_text
from engine.errors import SourceError, SourceErrors
from engine.source.loader import Document, load_file
from engine.source.names import undefined_names
from engine.source.messages import read_comms
from engine.memory import paused_gc
from engine.durations import parse_duration
from engine.source.model import Input, Runbook, Step, StepKind, Verify
from engine.source.schema import (STEP_KEYWORDS, combinator_message, did_you_mean, fragment_errors,
                           pick_branch, schema_errors)

GROUP_KEYS = ("block", "rescue", "always")
_TEMPLATE_HINT = ("{{", "{%")


def load_runbook(path: str | Path, known_names: Iterable[str] = (), *,
                 trusted_sha256: str | None = None) -> Runbook:
    """Load, validate and compile a runbook file. Raises ``SourceErrors`` with every problem.

    ``trusted_sha256``: the fingerprint of a version that was fully validated
    before (a resumed run's). If the file still has it, the schema, argument
    and name checks are skipped — they could only repeat their verdict — which
    makes resuming a long run fast.
    """
    doc = load_file(path, scalar_positions=trusted_sha256 is None)
    trusted = trusted_sha256 is not None and trusted_sha256 == _sha256(doc.text)
    if trusted_sha256 is not None and not trusted:
        doc = load_file(path)  # changed since validated: full positions for the errors
    return compile_runbook(doc, known_names, trusted=trusted)


def _sha256(text: str) -> str:
    return sha256_text(text)


def compile_runbook(doc: Document, known_names: Iterable[str] = (), *,
                    trusted: bool = False) -> Runbook:
    errors = [] if trusted else schema_errors(doc, "runbook")
    if not isinstance(doc.data, dict):
        raise SourceErrors(errors)
    compiler = _Compiler(doc, check_args=not trusted)
    with paused_gc():
        runbook = compiler.runbook()
    errors += compiler.errors
    if not trusted:
        errors += undefined_names(doc, runbook, compiler, set(known_names))
    if errors:
        raise SourceErrors(_unique(errors))
    return runbook


def _unique(errors: list[SourceError]) -> list[SourceError]:
    seen, out = set(), []
    for error in errors:
        key = (error.pos, error.message)
        if key not in seen:
            seen.add(key)
            out.append(error)
    return out


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "step"


@dataclass
class _Compiler:
    doc: Document
    check_args: bool = True
    errors: list[SourceError] = field(default_factory=list)
    ids: dict[str, tuple] = field(default_factory=dict)
    registered: set[str] = field(default_factory=set)
    facts: set[str] = field(default_factory=set)
    loop_vars: set[str] = field(default_factory=set)
    step_vars: set[str] = field(default_factory=set)
    id_suffix: dict[str, int] = field(default_factory=dict)  # last "-N" given to each slug
    fragments: list[Document] = field(default_factory=list)  # included step files
    _including: list[str] = field(default_factory=list)      # the include chain, for cycles

    def error(self, path: tuple, message: str, *, key: bool = False) -> None:
        self.errors.append(self.doc.error(path, message, key=key))

    # --- the runbook ---
    def runbook(self) -> Runbook:
        data = self.doc.data
        self._reserve_explicit_ids(data.get("steps"), ("steps",))
        steps = self.steps(data.get("steps"), ("steps",), "")
        comms = read_comms(self.doc, list(self.fragments), _renders_messages)
        self.errors += comms.errors
        self.fragments += comms.files  # fingerprinted for resume, names checked like steps'
        return Runbook(
            name=str(data.get("name", "")), path=self.doc.path, steps=steps,
            description=_text(data.get("description")), tier=_text(data.get("tier")),
            owner=_text(data.get("owner")), rto=self.duration(data, ("rto",)),
            rpo=self.duration(data, ("rpo",)), inputs=self.inputs(data.get("inputs")),
            vars=data.get("vars") if isinstance(data.get("vars"), dict) else {},
            on_failure=str(data.get("on_failure", "stop")),
            rollback_strategy=str(data.get("rollback_strategy", "on_failure")),
            drill=data.get("drill") if isinstance(data.get("drill"), dict) else None,
            fingerprint=_sha256(self.doc.text),
            includes=tuple(fragment.path for fragment in self.fragments),
            messages=comms.messages, notifications=comms.notifications)

    def inputs(self, raw: Any) -> dict[str, Input]:
        if not isinstance(raw, dict):
            return {}
        inputs = {}
        for name, spec in raw.items():
            spec = spec if isinstance(spec, dict) else {}
            inputs[name] = Input(
                name=name, type=str(spec.get("type", "string")),
                description=_text(spec.get("description")), required=bool(spec.get("required")),
                default=spec.get("default"), has_default="default" in spec,
                choices=tuple(spec.get("choices") or ()), secret=bool(spec.get("secret")),
                pos=self.doc.pos(("inputs", name), key=True))
        return inputs

    def duration(self, mapping: dict, path: tuple) -> float | None:
        value = mapping.get(path[-1])
        if value is None:
            return None
        if isinstance(value, str) and value.startswith(_TEMPLATE_HINT):
            self.error(path, f"{path[-1]}: a duration cannot be a template")
            return None
        try:
            return parse_duration(value)
        except ValueError:
            return None  # the schema already reported it at this position

    # --- ids ---
    def _reserve_explicit_ids(self, raw: Any, path: tuple) -> None:
        if not isinstance(raw, list):
            return
        for index, item in enumerate(raw):
            if not isinstance(item, dict):
                continue
            here = path + (index,)
            explicit = item.get("id")
            if isinstance(explicit, str):
                if explicit in self.ids:
                    first = self.doc.pos(self.ids[explicit] + ("id",))
                    self.error(here + ("id",), f"duplicate step id '{explicit}' "
                                               f"(first used at line {first.line})")
                else:
                    self.ids[explicit] = here
            for group in ("block", "rescue", "always", "parallel", "rollback"):
                self._reserve_explicit_ids(item.get(group), here + (group,))

    def _derive_id(self, item: dict, path: tuple, action: str, prefix: str) -> str:
        if isinstance(item.get("id"), str):
            return item["id"]
        base = slug(item.get("name") or action or "step")
        if prefix:
            base = f"{prefix}-{base}"
        # Resume counting where this slug stopped: 10,000 steps named "restart"
        # must not rescan 1..n for each one.
        candidate, n = base, self.id_suffix.get(base, 1)
        while candidate in self.ids:
            n += 1
            candidate = f"{base}-{n}"
        self.id_suffix[base] = n
        self.ids[candidate] = path
        return candidate

    # --- steps ---
    def steps(self, raw: Any, path: tuple, prefix: str, label: str = "") -> tuple[Step, ...]:
        if not isinstance(raw, list):
            return ()
        out = []
        for index, item in enumerate(raw):
            if isinstance(item, dict):
                human = f"{label}{index + 1}"
                step = self.step(item, path + (index,), human, prefix)
                if step is not None:
                    out.append(step)
        return tuple(out)

    def step(self, item: dict, path: tuple, human_path: str, prefix: str) -> Step | None:
        action = self._find_action(item, path)
        if "parallel" in item and isinstance(item["parallel"], list):
            kind = StepKind.PARALLEL
        elif "block" in item or "include" in item:
            kind = StepKind.BLOCK
        else:
            kind = StepKind.ACTION
        self._check_groups(item, path, kind, action)
        step_id = self._derive_id(item, path, action, prefix)
        if action:
            if self.check_args:
                self._check_args(action, item[action], path + (action,))
        register = item.get("register") if isinstance(item.get("register"), str) else ""
        if register:
            self.registered.add(register)
        if action == "set_fact" and isinstance(item.get(action), dict):
            self.facts.update(item[action])
        loop_var = item.get("loop_var") if isinstance(item.get("loop_var"), str) else "item"
        if "loop" in item:
            self.loop_vars.add(loop_var)
        if isinstance(item.get("vars"), dict):
            self.step_vars.update(item["vars"])
        sub = human_path + "."
        return Step(
            id=step_id, path=human_path, name=_text(item.get("name")), kind=kind,
            pos=self.doc.pos(path), action=action, args=item.get(action) if action else None,
            description=_text(item.get("description")), when=item.get("when"),
            loop=item.get("loop"), loop_var=loop_var,
            loop_parallel=item["parallel"] if isinstance(item.get("parallel"), int) else 1,
            register=register, retries=_int(item.get("retries")),
            delay=_or(self.duration(item, path + ("delay",)), 1.0),
            until=item.get("until") if isinstance(item.get("until"), str) else None,
            timeout=self.duration(item, path + ("timeout",)),
            ignore_errors=item.get("ignore_errors") is True,
            verify=self.verifications(item.get("verify"), path + ("verify",)),
            tags=_tags(item.get("tags")), no_log=item.get("no_log") is True,
            idempotent=item.get("idempotent") is True,
            mutates=item.get("mutates") if isinstance(item.get("mutates"), bool) else None,
            expected_duration=self.duration(item, path + ("expected_duration",)),
            vars=item.get("vars") if isinstance(item.get("vars"), dict) else {},
            rollback=self.steps(item.get("rollback"), path + ("rollback",), step_id + "-rollback",
                                sub + "rollback."),
            block=self.steps(item.get("block"), path + ("block",), "", sub + "block.")
            if "include" not in item else self.include(item, path + ("include",), sub),
            rescue=self.steps(item.get("rescue"), path + ("rescue",), "", sub + "rescue."),
            always=self.steps(item.get("always"), path + ("always",), "", sub + "always."),
            children=self.steps(item.get("parallel"), path + ("parallel",), "", sub + "parallel.")
            if kind is StepKind.PARALLEL else (),
            target=item.get("target"),
            rehearse=item.get("rehearse") if item.get("rehearse") in ("run", "plan") else None)

    # --- include: steps from another file, compiled in place ---
    def include(self, item: dict, path: tuple, sub: str) -> tuple[Step, ...]:
        """The steps of an included file (a YAML list of steps), with their own positions."""
        if "block" in item:
            self.error(path, "a step cannot have both 'include' and 'block'", key=True)
            return ()
        target = item.get("include")
        if not isinstance(target, str):
            return ()  # the schema reported it
        resolved = str((Path(self.doc.path).parent / target).resolve())
        if resolved in self._including:
            self.error(path, f"include cycle: {' -> '.join(self._including + [resolved])}")
            return ()
        fragment = self._load_fragment(resolved, path)
        if fragment is None:
            return ()
        outer = self.doc
        self._including.append(resolved)
        self.doc = fragment
        try:
            self._reserve_explicit_ids(fragment.data, ())
            return self.steps(fragment.data, (), "", sub + "include.")
        finally:
            self.doc = outer
            self._including.pop()

    def _load_fragment(self, resolved: str, path: tuple) -> Document | None:
        try:
            fragment = load_file(resolved)
        except SourceError as exc:
            if "cannot read file" in exc.message:
                self.error(path, f"cannot include {resolved}: {exc.message}")
            else:
                self.errors.append(exc)
            return None
        problems = fragment_errors(fragment)
        self.errors += problems
        if problems and not isinstance(fragment.data, list):
            return None
        if fragment not in self.fragments:
            self.fragments.append(fragment)
        return fragment

    def _find_action(self, item: dict, path: tuple) -> str:
        found = []
        for key in item:
            if key in STEP_KEYWORDS:
                continue
            if actions.is_known(str(key)):
                found.append(key)
                continue
            self.error(path + (key,), _unknown_key_message(str(key)), key=True)
        if len(found) > 1:
            self.error(path + (found[1],), "more than one action in a step: "
                       + ", ".join(found) + " (split it into separate steps)", key=True)
        return found[0] if found else ""

    def _check_groups(self, item: dict, path: tuple, kind: StepKind, action: str) -> None:
        for group in ("rescue", "always"):
            if group in item and "block" not in item:
                self.error(path + (group,), f"'{group}' needs a 'block' in the same step", key=True)
        if kind is not StepKind.ACTION and action:
            self.error(path + (action,), f"a step with '{kind.value}' cannot also run an action "
                       f"('{action}')", key=True)
        if kind is StepKind.ACTION and not action and not any(
                str(k) not in STEP_KEYWORDS for k in item):
            self.error(path, "step has no action: add one action key such as 'command' "
                             "(see 'runbook actions')")
        if "parallel" in item and isinstance(item["parallel"], int) and not (
                "loop" in item or "target" in item):
            self.error(path + ("parallel",), "'parallel: N' needs a 'loop' or a 'target' "
                       "(or give 'parallel' a list of steps)", key=True)

    def _check_args(self, action: str, args: Any, path: tuple) -> None:
        cls = actions.get_action(action)
        schema_errors = list(arg_validator(cls).iter_errors(args))
        for error in schema_errors:
            if _is_templated(error.instance):
                continue  # known only at run time; checked again after rendering
            sub = path + tuple(error.absolute_path)
            self.errors += list(_arg_errors(self.doc, action, sub, error))
        if not schema_errors:  # the action's own checks may rely on the schema's shape
            for sub, message in cls.literal_arg_errors(args):
                self.errors.append(self.doc.error(path + tuple(sub), f"{action}: {message}"))

    def verifications(self, raw: Any, path: tuple) -> tuple[Verify, ...]:
        if not isinstance(raw, list):
            return ()
        out = []
        for index, item in enumerate(raw):
            here = path + (index,)
            if isinstance(item, str):
                out.append(Verify(that=(item,), pos=self.doc.pos(here)))
            elif isinstance(item, dict) and "that" in item:
                that = item["that"]
                that = tuple(str(t) for t in that) if isinstance(that, list) else (str(that),)
                out.append(Verify(that=that, message=_text(item.get("message")),
                                  retries=_int(item.get("retries")),
                                  delay=_or(self.duration(item, here + ("delay",)), 1.0),
                                  pos=self.doc.pos(here)))
        return tuple(out)


def _renders_messages(action: str) -> bool:
    """Whether the action's ``message``/``audience`` arguments name one of the runbook's messages."""
    return actions.is_known(action) and getattr(actions.get_action(action), "renders_messages",
                                                False)


@lru_cache(maxsize=4096)  # the same typo repeated over a large file costs one difflib pass
def _unknown_key_message(key: str) -> str:
    keyword = did_you_mean(key, STEP_KEYWORDS)
    if keyword:
        return f"unknown step keyword '{key}'{keyword}"
    suggestion = actions.suggest(key)
    if suggestion:
        return f"unknown action '{key}' (did you mean '{suggestion}'?)"
    return f"unknown action or keyword '{key}' (see 'runbook actions')"


def _arg_errors(doc: Document, action: str, path: tuple, error) -> Iterator[SourceError]:
    special = combinator_message(error)
    if special:
        yield doc.error(path, f"{action}: {special}")
        return
    if error.validator in ("oneOf", "anyOf") and error.context:
        inner = pick_branch(error)
        yield from _arg_errors(doc, action, path + tuple(inner.relative_path), inner)
        return
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        for key in error.instance:
            if key not in known:
                yield doc.error(path + (key,), f"{action}: unknown argument '{key}'"
                                f"{did_you_mean(key, known)}", key=True)
        return
    yield doc.error(path, f"{action}: {error.message}")


def _is_templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(_is_templated(v) for v in value.values())
    if isinstance(value, list):
        return any(_is_templated(v) for v in value)
    return False


# --- undefined names, found statically from the Jinja AST ---

def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _or(value, default):
    return default if value is None else value


def _tags(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset()
