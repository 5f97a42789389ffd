"""Sandboxed Jinja2: templates, bare expressions and unknown values.

- Templates and expressions run in Jinja2's immutable sandbox with strict
  undefined: ``{{ ''.__class__ }}`` is refused, an undefined name is an error
  naming the variable, never an empty string.
- A string that is exactly one ``{{ expr }}`` renders to the expression's
  native value (a list stays a list, 3 stays 3), as in Ansible.
- ``Unknown`` stands for a value a dry-run could not produce. Any attempt to
  turn it into a concrete value (``if``, ``len``, ``int``) raises
  ``UnknownValue``, which the executor reports as "would run if ...".

Masking secrets is not done here: see ``engine.secrets``.
"""
from __future__ import annotations

import re
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine import filters
from engine.unknowns import Unknown, UnknownValue

_SINGLE_EXPR = re.compile(r"^\{\{((?:(?!\}\}|\{\{).)*)\}\}$", re.DOTALL)


_UNSEEN = object()


class TemplateFailure(Exception):
    """A template or expression could not be evaluated (message is user-facing)."""


class _Environment(ImmutableSandboxedEnvironment):
    def getattr(self, obj: Any, attribute: str) -> Any:
        # Registered results and inventory targets are dicts: let ``x.rc`` find
        # the key before Python attributes such as ``dict.items`` shadow it.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


class Templar:
    """Compiles and caches templates and expressions; evaluates them against a scope."""

    BUILTINS = frozenset({"targets", "groups", "secrets", "item", "run", "result",
                          "loop_index", "failure", "target"})

    def __init__(self) -> None:
        self.env = _Environment(undefined=StrictUndefined, autoescape=False,
                                keep_trailing_newline=True)
        self.env.filters.update(filters.FILTERS)
        self.env.globals.update(filters.GLOBALS)
        filters.make_unknown_aware(self.env.filters)
        filters.make_unknown_aware(self.env.tests, keep=filters.TESTS_KNOWN_FOR_UNKNOWNS)
        self._templates: dict[str, Any] = {}
        self._singles: dict[str, str | None] = {}
        self._expressions: dict[str, Any] = {}

    # --- rendering ---
    def render(self, value: Any, scope: dict) -> Any:
        """Render every template string inside ``value`` (dicts and lists walked)."""
        if isinstance(value, str):
            return self.render_string(value, scope) if _is_template(value) else value
        if isinstance(value, dict):
            return {k: self.render(v, scope) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v, scope) for v in value]
        return value

    def render_string(self, text: str, scope: dict) -> Any:
        single = self._single_expression(text)
        if single is not None:
            return self.evaluate(single, scope)
        template = self._templates.get(text)
        if template is None:
            template = self._templates[text] = self._compile(self.env.from_string, text)
        return self._call(template.render, scope, text)

    def _single_expression(self, text: str) -> str | None:
        """The expression of a string that is exactly one ``{{ expr }}`` (it renders to a
        native value), else None. The fast path is a pattern; an expression that holds
        ``}}`` itself (a nested dict literal) is confirmed by Jinja's own lexer."""
        single = _SINGLE_EXPR.match(text)
        if single:
            return single.group(1) if "{%" not in text else None
        stripped = text.strip()
        if not (stripped.startswith("{{") and stripped.endswith("}}")) or text != stripped:
            return None
        found = self._singles.get(text, _UNSEEN)
        if found is _UNSEEN:
            found = self._singles[text] = self._lex_single(text)
        return found

    def _lex_single(self, text: str) -> str | None:
        try:
            kinds = [kind for _, kind, _ in self.env.lex(text)]
        except TemplateSyntaxError:
            return None  # rendering reports the syntax error with its message
        if kinds.count("variable_begin") != 1 or kinds[0] != "variable_begin" \
                or kinds[-1] != "variable_end" or "data" in kinds:
            return None
        return text[2:-2]

    def evaluate(self, expression: str, scope: dict) -> Any:
        """Evaluate a bare Jinja expression (``when``, ``until``, ``verify``)."""
        compiled = self._expressions.get(expression)
        if compiled is None:
            compiled = self._expressions[expression] = self._compile(
                self.env.compile_expression, expression.strip(), undefined_to_none=False)
        return self._call(compiled, scope, expression)

    def truth(self, expression: Any, scope: dict) -> bool:
        """Evaluate a condition; a list of conditions must all hold (Ansible's ``when`` list)."""
        if isinstance(expression, bool):
            return expression
        if isinstance(expression, list):
            return all(self.truth(e, scope) for e in expression)
        value = self.evaluate(str(expression), scope)
        if isinstance(value, Unknown):
            raise UnknownValue(value)
        return bool(value)

    def _compile(self, factory, text: str, **kwargs):
        try:
            return factory(text, **kwargs)
        except TemplateSyntaxError as exc:
            raise TemplateFailure(f"template syntax error: {exc.message}") from None
        except RecursionError:
            raise TemplateFailure(_TOO_DEEP) from None

    def _call(self, compiled, scope: dict, source: str = "") -> Any:
        try:
            value = compiled(scope)
            if isinstance(value, Undefined):
                str(value)  # a native result such as ``{{ out.missing }}``: StrictUndefined raises
        except UnknownValue:
            raise
        except UndefinedError as exc:
            raise TemplateFailure(_undefined_message(exc, source)) from None
        except SecurityError as exc:
            raise TemplateFailure(f"refused by the template sandbox: {exc}") from None
        except TemplateError as exc:
            raise TemplateFailure(f"template error: {exc}") from None
        except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
            raise TemplateFailure(f"template error: {type(exc).__name__}: {exc}") from None
        except RecursionError:
            raise TemplateFailure(_TOO_DEEP) from None
        return value

    # --- static analysis for ``runbook validate`` ---
    def names_in_template(self, text: str) -> set[str]:
        """Top-level variable names a template reads (raises ``TemplateFailure`` on bad syntax)."""
        single = self._single_expression(text)
        source = text if single is None else "{{ " + single + " }}"
        ast = self._parse(source)
        return self._free_names(ast)

    def names_in_expression(self, expression: str) -> set[str]:
        ast = self._parse("{{ (" + expression + ") }}")
        return self._free_names(ast)

    def _parse(self, source: str) -> nodes.Template:
        try:
            return self.env.parse(source)
        except TemplateSyntaxError as exc:
            raise TemplateFailure(f"template syntax error: {exc.message}") from None
        except RecursionError:
            raise TemplateFailure(_TOO_DEEP) from None

    def _free_names(self, ast: nodes.Template) -> set[str]:
        try:
            names = meta.find_undeclared_variables(ast)
        except TemplateSyntaxError as exc:
            # Unknown filters and tests are only found when the AST is compiled.
            raise TemplateFailure(f"template error: {exc.message}") from None
        except RecursionError:
            raise TemplateFailure(_TOO_DEEP) from None
        return {n for n in names if n not in self.env.globals} - _optional_names(ast)


# Jinja parses and compiles recursively: ((((x)))) 5,000 deep must be an error, not a crash.
_TOO_DEEP = "template is nested too deeply"


def _optional_names(ast: nodes.Template) -> set[str]:
    """Names the author marked as possibly undefined: ``x | default(...)``, ``x is defined``."""
    guarded = [f.node for f in ast.find_all(nodes.Filter) if f.name in ("default", "d")]
    guarded += [t.node for t in ast.find_all(nodes.Test) if t.name in ("defined", "undefined")]
    return {node.name for node in guarded if isinstance(node, nodes.Name)}


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def _undefined_message(exc: UndefinedError, source: str = "") -> str:
    message = str(exc.message or exc)
    match = re.match(r"'([^']+)' is undefined", message)
    if match:
        return f"undefined variable '{match.group(1)}'"
    where = f" in {source.strip()!r}" if source else ""
    return f"undefined value{where}: {message}"


