"""What botocore's service models say about a call, offline: does the service and
operation exist (with a suggestion when not), is it read-only, are its parameters
valid, which response fields are secret.

botocore is imported inside the functions; loading a service model reads its JSON
from botocore's data directory (no network, no credentials).
"""
from __future__ import annotations

import base64
import datetime
import difflib
import re
from decimal import Decimal
from functools import lru_cache
from typing import Any, Iterator

from engine.actions.base import ActionError

__all__ = ["service_model", "operation_model", "canonical_operation", "is_read_only",
           "param_problems", "json_safe", "mask_secrets", "is_templated", "waiter_name",
           "READ_ONLY_VERBS", "MUTATING_EXCEPTIONS", "BODY_LIMIT"]

BODY_LIMIT = 64 * 1024
MASK = "***"

#: An operation is read-only when its CamelCase name starts with one of these words
#: (a whole word: ``GetObject``, not ``Getaway``) ...
READ_ONLY_VERBS = ("Describe", "Get", "List", "Head", "Search", "Lookup", "Query", "Scan",
                   "Select", "Filter", "BatchGet", "BatchDescribe")
#: ... except these, which create or change something despite their names.
MUTATING_EXCEPTIONS = frozenset({
    ("cognito-identity", "GetId"),                  # creates the identity when it is new
    ("cognito-identity", "GetOpenIdToken"),
    ("cognito-identity", "GetOpenIdTokenForDeveloperIdentity"),
    ("redshift", "GetClusterCredentials"),          # AutoCreate adds a database user
    ("redshift", "GetClusterCredentialsWithIAM"),
    ("iot", "GetRegistrationCode"),                 # generates one when there is none
})
#: response members masked besides those botocore marks ``sensitive``
SECRET_MEMBERS = frozenset({"secretaccesskey", "sessiontoken", "password", "masteruserpassword",
                            "secretstring", "secretbinary", "authorizationtoken", "plaintext",
                            "privatekey", "keymaterial"})


# --------------------------------------------------------------------------
# Services and operations
# --------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _botocore_session():
    import botocore.session

    return botocore.session.get_session()


@lru_cache(maxsize=1)
def service_names() -> tuple[str, ...]:
    return tuple(_botocore_session().get_available_services())


def _suggestion(word: str, candidates, lower: bool = True) -> str:
    pool = {c.lower() if lower else c: c for c in candidates}
    match = difflib.get_close_matches(word.lower() if lower else word, list(pool), n=1,
                                      cutoff=0.6)
    return f" (did you mean '{pool[match[0]]}'?)" if match else ""


@lru_cache(maxsize=64)
def service_model(service: str):
    """botocore's model of ``service`` (``rds``, ``route53`` ...); ActionError if unknown."""
    if service not in service_names():
        raise ActionError(f"unknown AWS service '{service}'{_suggestion(service, service_names())}")
    return _botocore_session().get_service_model(service)


@lru_cache(maxsize=256)
def canonical_operation(service: str, name: str) -> str:
    """The model's name (``DescribeDBInstances``) for ``DescribeDBInstances``,
    ``describe_db_instances`` or ``describe-db-instances``; ActionError with a
    suggestion when the service has no such operation."""
    from botocore import xform_name

    model = service_model(service)
    operations = list(model.operation_names)
    if name in operations:
        return name
    by_snake = {xform_name(op): op for op in operations}
    snake = name.replace("-", "_").lower()
    if snake in by_snake:
        return by_snake[snake]
    lowered = {op.lower(): op for op in operations}
    if name.lower() in lowered:
        return lowered[name.lower()]
    snake_style = "_" in name or "-" in name or name.islower()
    hint = _suggestion(snake, by_snake) if snake_style else _suggestion(name, operations)
    raise ActionError(f"{service} has no operation '{name}'{hint}")


def operation_model(service: str, operation: str):
    return service_model(service).operation_model(canonical_operation(service, operation))


def is_read_only(service: str, operation: str) -> bool:
    """The documented rule: a read verb at the start of the name, minus the exceptions."""
    if (service, operation) in MUTATING_EXCEPTIONS:
        return False
    for verb in READ_ONLY_VERBS:
        rest = operation[len(verb):]
        if operation.startswith(verb) and (not rest or rest[0].isupper()):
            return True
    return False


def waiter_name(service: str, name: str, client=None) -> str:
    """botocore's waiter name (``DBInstanceAvailable``) for a CamelCase or snake name."""
    from botocore import xform_name

    waiters = _waiter_names(service)
    if name in waiters:
        return name
    by_snake = {xform_name(w): w for w in waiters}
    if name.replace("-", "_").lower() in by_snake:
        return by_snake[name.replace("-", "_").lower()]
    known = ", ".join(sorted(by_snake)) or "none"
    hint = _suggestion(name, list(waiters) + list(by_snake))
    raise ActionError(f"{service} has no waiter '{name}'{hint} (its waiters: {known})")


@lru_cache(maxsize=64)
def _waiter_names(service: str) -> tuple[str, ...]:
    service_model(service)
    try:
        config = _botocore_session().get_waiter_model(service)
    except Exception:  # botocore raises DataNotFoundError for services without waiters
        return ()
    return tuple(config.waiter_names)


def can_paginate(service: str, operation: str) -> bool:
    try:
        model = _botocore_session().get_paginator_model(service)
    except Exception:  # no paginators for this service
        return False
    try:
        model.get_paginator(operation)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------

def is_templated(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(is_templated(k) or is_templated(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(is_templated(v) for v in value)
    return False


def param_problems(op_model, params: dict) -> list[tuple[tuple, str]]:
    """``(path, message)`` for every parameter botocore's model refuses (unknown or
    missing keys, wrong types, lengths, ranges) and every value outside an enum.
    Values that are still templates are skipped: they are known only at run time."""
    from botocore.validate import ParamValidator

    shape = op_model.input_shape
    if shape is None:
        return [((key,), f"{op_model.name} takes no parameters") for key in params]
    report = ParamValidator().validate(params, shape)
    problems = [p for p in (_problem(params, e) for e in getattr(report, "_errors", [])) if p]
    problems += list(_enum_problems(params, shape, ()))
    return problems


def _path_of(name: str) -> tuple:
    """``ChangeBatch.Changes[0].TTL`` -> ``("ChangeBatch", "Changes", 0, "TTL")``."""
    parts: list = []
    for piece in re.findall(r"[^.\[\]]+|\[\d+\]", name.split(" (key:")[0]):
        parts.append(int(piece[1:-1]) if piece.startswith("[") else piece)
    return tuple(parts)


def dotted(path: tuple) -> str:
    """``("ChangeBatch", "Changes", 0, "TTL")`` -> ``params.ChangeBatch.Changes[0].TTL``."""
    text = "params"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _value_at(params: Any, path: tuple) -> Any:
    for key in path:
        try:
            params = params[key]
        except (KeyError, IndexError, TypeError):
            return None
    return params


def _under_template(params: Any, path: tuple) -> bool:
    """Whether the value at ``path``, or one that contains it, is a template string."""
    for n in range(len(path) + 1):
        value = _value_at(params, path[:n])
        if isinstance(value, str) and is_templated(value):
            return True
    return False


def _problem(params: dict, error: tuple) -> tuple[tuple, str] | None:
    reason, name, info = error
    path = _path_of(name)
    if _under_template(params, path):
        return None
    where = dotted(path)
    if reason == "missing required field":
        return path, f"{where}: missing required parameter '{info['required_name']}'"
    if reason == "unknown field":
        unknown = info["unknown_param"]
        hint = _suggestion(unknown, info.get("valid_names", []), lower=False)
        return path + (unknown,), f"{where}: unknown parameter '{unknown}'{hint}"
    if reason in ("invalid type", "invalid type for document"):
        wanted = " or ".join(_type_word(t) for t in info.get("valid_types", []))
        got = info.get("param")
        return path, f"{where}: expected {wanted}, got {_type_word(str(type(got)))} {got!r}"
    if reason in ("invalid length", "invalid range"):
        what = "length" if reason == "invalid length" else "value"
        return path, f"{where}: {what} below the minimum {info.get('min_allowed')}"
    return path, f"{where}: {reason}"


def _type_word(python_type: str) -> str:
    words = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
             "dict": "mapping", "list": "list", "tuple": "list", "bytes": "bytes",
             "bytearray": "bytes", "datetime": "timestamp", "Decimal": "number"}
    match = re.search(r"'(?:[\w.]+\.)?(\w+)'", python_type)
    return words.get(match.group(1), match.group(1)) if match else python_type


def _enum_problems(value: Any, shape, path: tuple) -> Iterator[tuple[tuple, str]]:
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for key, member in value.items():
            if key in shape.members:
                yield from _enum_problems(member, shape.members[key], path + (key,))
    elif kind == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _enum_problems(item, shape.member, path + (index,))
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            yield from _enum_problems(item, shape.value, path + (key,))
    elif kind == "string" and isinstance(value, str) and getattr(shape, "enum", None):
        if value not in shape.enum and not is_templated(value):
            where = dotted(path)
            hint = _suggestion(value, shape.enum)
            yield path, f"{where}: '{value}' is not one of {', '.join(shape.enum)}{hint}"


# --------------------------------------------------------------------------
# JMESPath (``select``, ``until``)
# --------------------------------------------------------------------------

def jmespath_problem(expression: str) -> str | None:
    """Why ``expression`` is not JMESPath, or None."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        jmespath.compile(expression)
    except JMESPathError as exc:
        return f"not a JMESPath expression: {_jmespath_reason(exc)}"
    return None


def jmespath_search(expression: str, data: Any, what: str) -> Any:
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.search(expression, data)
    except JMESPathError as exc:
        raise ActionError(f"{what} {expression!r}: {_jmespath_reason(exc)}") from None


def _jmespath_reason(exc) -> str:
    """jmespath's own words without its multi-line caret drawing."""
    kind = {"IncompleteExpressionError": "incomplete expression"}.get(type(exc).__name__)
    where = getattr(exc, "lex_position", None)
    text = kind or str(getattr(exc, "msg", None) or str(exc).splitlines()[0]).strip()
    return f"{text} at character {where}" if isinstance(where, int) else text


# --------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------

def json_safe(value: Any) -> Any:
    """A response as plain JSON: timestamps ISO 8601, bytes decoded (or base64),
    streams read up to 64 KiB."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray)):
        return _bytes_text(bytes(value))
    if hasattr(value, "read"):  # StreamingBody
        data = value.read(BODY_LIMIT + 1)
        more = len(data) > BODY_LIMIT
        text = _bytes_text(data[:BODY_LIMIT])
        return text + ("… (cut at 64 KiB; use aws.s3_copy for whole objects)" if more else "")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _bytes_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


def mask_secrets(value: Any, shape, found: list[str]) -> Any:
    """``value`` (a JSON-safe response) with members botocore marks ``sensitive``, and
    credential-like members (``SecretAccessKey``, ``SessionToken`` ...), replaced by
    ``***``; their values are appended to ``found`` for the run's redactor."""
    if shape is None:
        return value
    kind = shape.type_name
    if shape.metadata.get("sensitive") and value not in (None, ""):
        found.extend(_leaves(value))
        return MASK
    if kind == "structure" and isinstance(value, dict):
        out = {}
        for key, item in value.items():
            member = shape.members.get(key)
            if key.lower() in SECRET_MEMBERS and isinstance(item, str) and item:
                found.append(item)
                out[key] = MASK
            else:
                out[key] = mask_secrets(item, member, found)
        return out
    if kind == "list" and isinstance(value, list):
        return [mask_secrets(item, shape.member, found) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {k: mask_secrets(v, shape.value, found) for k, v in value.items()}
    return value


def _leaves(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [str(value)] if value not in (None, "") else []
