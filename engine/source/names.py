"""Name analysis for ``runbook validate``: every variable a template or an expression reads
must be defined — an input, a var, a registered result, a loop variable, a ``set_fact``
key, a step's ``vars`` key or a built-in — found statically in the Jinja AST and reported
at its position."""
from __future__ import annotations

from typing import Any

from engine.source.loader import Document
from engine.source.model import Runbook
from engine.source.schema import did_you_mean
from engine.errors import SourceError
from engine.templating import Templar, TemplateFailure


def undefined_names(doc: Document, runbook: Runbook, compiler,
                     known: set[str]) -> list[SourceError]:
    templar = Templar()
    defined = (set(runbook.inputs) | set(runbook.vars) | compiler.registered | compiler.facts
               | compiler.loop_vars | compiler.step_vars | Templar.BUILTINS | known)
    errors = []
    sources = [(doc, _templated_strings(doc.data))]
    sources += [(fragment, _step_list_strings(fragment.data, ())) for fragment in compiler.fragments]
    for source, strings in sources:
        errors += _check_names(source, strings, templar, defined)
    return errors


def _check_names(doc: Document, strings, templar: Templar, defined: set[str]) -> list[SourceError]:
    errors = []
    for path, text, is_expression in strings:
        try:
            names = (templar.names_in_expression(text) if is_expression
                     else templar.names_in_template(text))
        except TemplateFailure as exc:
            errors.append(doc.error(path, str(exc)))
            continue
        for name in sorted(names - defined):
            hint = did_you_mean(name, defined - Templar.BUILTINS)
            errors.append(doc.error(path, f"undefined variable '{name}'{hint}: not an input, "
                                          "var, registered result, loop variable or set_fact key"))
    return errors


_EXPRESSION_KEYS = ("when", "until")
_STEP_GROUPS = ("block", "rescue", "always", "parallel", "rollback")


def _templated_strings(data: Any):
    """(path, text, is_expression) for every template string and expression in the document.

    Only a step's own ``when``/``until``, its ``verify`` checks and ``assert``'s
    ``that`` are expressions: an argument that happens to be called ``when``
    (an HTTP body, say) is ordinary data.
    """
    if not isinstance(data, dict):
        return
    for key, item in data.items():
        if key == "steps":
            yield from _step_list_strings(item, (key,))
        elif key != "drill":  # rendered by `runbook drill` over the lab, not the run's scope
            yield from _strings(item, (key,))


def _step_list_strings(steps: Any, path: tuple):
    if not isinstance(steps, list):
        yield from _strings(steps, path)
        return
    for index, step in enumerate(steps):
        if isinstance(step, dict):
            yield from _step_strings(step, path + (index,))


def _step_strings(step: dict, path: tuple):
    for key, item in step.items():
        here = path + (key,)
        if key in _STEP_GROUPS:
            yield from _step_list_strings(item, here)
        elif key in _EXPRESSION_KEYS:
            yield from _strings(item, here, expression=True)
        elif key == "verify" and isinstance(item, list):
            for index, check in enumerate(item):
                yield from _expression_and_rest(check, here + (index,))
        elif key == "assert":
            yield from _expression_and_rest(item, here)
        else:
            yield from _strings(item, here)


def _expression_and_rest(check: Any, path: tuple):
    """A check (``"expr"`` or ``{that: ..., message: ...}``): ``that`` is an expression."""
    if isinstance(check, str):
        yield path, check, True
    elif isinstance(check, dict):
        for key, item in check.items():
            yield from _strings(item, path + (key,), expression=key == "that")


def _strings(value: Any, path: tuple, expression: bool = False):
    if isinstance(value, str):
        if expression:
            yield path, value, True
        elif "{{" in value or "{%" in value:
            yield path, value, False
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, path + (index,), expression)
