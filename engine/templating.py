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

from engine import secrets as _secrets

_SINGLE_EXPR = re.compile(r"^\{\{((?:(?!\}\}|\{\{).)*)\}\}$", re.DOTALL)


class TemplateFailure(Exception):
    """A template or expression could not be evaluated (message is user-facing)."""


class UnknownValue(Exception):
    """An expression needed a value that a dry-run could not produce."""

    def __init__(self, unknown: "Unknown") -> None:
        super().__init__(f"{unknown.origin} is unknown in a dry-run")
        self.unknown = unknown


class Unknown:
    """A value that only a real run would know, e.g. ``users.rows`` of a planned step."""

    __slots__ = ("origin",)

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def __getattr__(self, name: str) -> "Unknown":
        if name.startswith("__"):
            raise AttributeError(name)
        return Unknown(f"{self.origin}.{name}")

    def __getitem__(self, key: Any) -> "Unknown":
        if isinstance(key, slice):
            key = f"{'' if key.start is None else key.start}:{'' if key.stop is None else key.stop}"
            return Unknown(f"{self.origin}[{key}]")
        return Unknown(f"{self.origin}[{key!r}]")

    def _derived(self, *_: Any) -> "Unknown":
        return self

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _derived  # type: ignore[assignment]
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _derived
    __truediv__ = __floordiv__ = __mod__ = __neg__ = _derived
    __hash__ = object.__hash__

    def _concrete(self, *_: Any):
        raise UnknownValue(self)

    __bool__ = __len__ = __iter__ = __int__ = __float__ = __index__ = __contains__ = _concrete

    def __str__(self) -> str:
        return f"<{self.origin}: unknown until run>"

    __repr__ = __str__


def _contains_unknown(value: Any) -> Unknown | None:
    if isinstance(value, Unknown):
        return value
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return None
    for item in value:
        found = _contains_unknown(item)
        if found is not None:
            return found
    return None


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
        self.env.filters.update(_EXTRA_FILTERS)
        self._templates: dict[str, Any] = {}
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
        single = _SINGLE_EXPR.match(text)
        if single and "{%" not in text:
            return self.evaluate(single.group(1), scope)
        template = self._templates.get(text)
        if template is None:
            template = self._templates[text] = self._compile(self.env.from_string, text)
        return self._call(template.render, scope, text)

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
        single = _SINGLE_EXPR.match(text)
        source = text if not single else "{{ " + single.group(1) + " }}"
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


def contains_unknown(value: Any) -> Unknown | None:
    """The first ``Unknown`` inside ``value``, if any."""
    return _contains_unknown(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y")
    return bool(value)


_EXTRA_FILTERS = {
    "bool": _to_bool,
    "to_json": lambda v: __import__("json").dumps(v, default=str),
    "from_json": lambda v: __import__("json").loads(v),
}


# Transitional: engine/run/executor.py still imports Redactor from here; the masker
# itself lives in engine.secrets.
Redactor = _secrets.Redactor
