"""The template vocabulary: the filters and tests an Ansible author reaches for first, and the
rule that makes every filter and test *unknown-aware* (a value a dry-run could not produce
goes in, an ``Unknown`` comes out — never a crash, never a made-up value)."""
from __future__ import annotations

import base64
import functools
import json
import os.path
import re
import shlex
from datetime import datetime, timezone
from typing import Any, Callable

from engine.unknowns import find_unknown


def unknown_aware(name: str, fn: Callable) -> Callable:
    """``fn`` that returns an ``Unknown`` when one of its arguments holds one."""
    @functools.wraps(fn)  # keeps Jinja's pass_environment/pass_context marks
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        unknown = find_unknown(args, kwargs)
        if unknown is not None:
            return unknown.derive(f" | {name}")
        return fn(*args, **kwargs)
    return wrapper


def make_unknown_aware(table: dict, keep: tuple[str, ...] = ()) -> None:
    """Wrap every entry of a Jinja ``filters`` or ``tests`` table in place."""
    for name, fn in list(table.items()):
        if name not in keep:
            table[name] = unknown_aware(name, fn)


def to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y")
    return bool(value)


def combine(*dicts: dict, recursive: bool = False, list_merge: str = "replace") -> dict:
    """Ansible's ``combine``: later mappings win; ``recursive`` merges nested mappings."""
    result: dict = {}
    for item in dicts:
        for one in item if isinstance(item, list) else [item]:
            if not isinstance(one, dict):
                raise TypeError(f"combine expects mappings, got {type(one).__name__}")
            result = _merge(result, one, recursive, list_merge)
    return result


def _merge(base: dict, other: dict, recursive: bool, list_merge: str) -> dict:
    merged = dict(base)
    for key, value in other.items():
        old = merged.get(key)
        if recursive and isinstance(old, dict) and isinstance(value, dict):
            merged[key] = _merge(old, value, recursive, list_merge)
        elif isinstance(old, list) and isinstance(value, list) and list_merge == "append":
            merged[key] = old + value
        elif isinstance(old, list) and isinstance(value, list) and list_merge == "prepend":
            merged[key] = value + old
        else:
            merged[key] = value
    return merged


def regex_replace(value: Any, pattern: str, replacement: str = "", ignorecase: bool = False,
                  multiline: bool = False, count: int = 0) -> str:
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    return re.sub(pattern, replacement, str(value), count=count, flags=flags)


def regex_search(value: Any, pattern: str, *groups: str, ignorecase: bool = False,
                 multiline: bool = False) -> Any:
    """The match (or the named/numbered groups ``'\\\\1'``, ``'\\\\g<name>'``), else None."""
    flags = (re.I if ignorecase else 0) | (re.M if multiline else 0)
    match = re.search(pattern, str(value), flags)
    if match is None:
        return None
    if not groups:
        return match.group(0)
    picked = []
    for group in groups:
        ref = re.fullmatch(r"\\(\d+)|\\g<(\w+)>", group)
        if ref is None:
            raise ValueError(f"regex_search: bad group reference {group!r}")
        key = int(ref.group(1)) if ref.group(1) else ref.group(2)
        picked.append(match.group(key))
    return picked


def b64encode(value: Any, encoding: str = "utf-8") -> str:
    return base64.b64encode(str(value).encode(encoding)).decode("ascii")


def b64decode(value: Any, encoding: str = "utf-8") -> str:
    return base64.b64decode(str(value)).decode(encoding)


def to_json(value: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, default=str, indent=indent, sort_keys=sort_keys, ensure_ascii=False)


def from_json(value: Any) -> Any:
    return json.loads(value)


def to_yaml(value: Any, indent: int = 2) -> str:
    import yaml

    return yaml.safe_dump(value, indent=indent, default_flow_style=False, sort_keys=False,
                          allow_unicode=True)


def from_yaml(value: Any) -> Any:
    import yaml

    return yaml.safe_load(str(value))


def dict2items(value: dict, key_name: str = "key", value_name: str = "value") -> list[dict]:
    if not isinstance(value, dict):
        raise TypeError(f"dict2items expects a mapping, got {type(value).__name__}")
    return [{key_name: k, value_name: v} for k, v in value.items()]


def items2dict(value: list, key_name: str = "key", value_name: str = "value") -> dict:
    return {item[key_name]: item[value_name] for item in value}


def to_datetime(value: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> datetime:
    """Ansible's ``to_datetime`` (a format), plus ISO 8601 with a zone when no format fits."""
    text = str(value)
    try:
        return datetime.strptime(text, fmt)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))


def now(utc: bool = False, fmt: str | None = None) -> Any:
    """``now()``: the current time (local, or UTC with ``utc=true``); ``fmt`` gives a string."""
    moment = datetime.now(timezone.utc) if utc else datetime.now().astimezone()
    return moment.strftime(fmt) if fmt else moment


FILTERS: dict[str, Callable] = {
    "bool": to_bool, "combine": combine, "regex_replace": regex_replace,
    "regex_search": regex_search, "quote": lambda v: shlex.quote(str(v)),
    "b64encode": b64encode, "b64decode": b64decode, "to_json": to_json, "from_json": from_json,
    "to_nice_json": lambda v: to_json(v, indent=2, sort_keys=True),
    "to_yaml": to_yaml, "from_yaml": from_yaml, "dict2items": dict2items,
    "items2dict": items2dict, "basename": lambda v: os.path.basename(str(v)),
    "dirname": lambda v: os.path.dirname(str(v)), "to_datetime": to_datetime,
}
GLOBALS: dict[str, Callable] = {"now": now}
#: tests that answer for an unknown value too: it is defined, whatever it turns out to be
TESTS_KNOWN_FOR_UNKNOWNS = ("defined", "undefined")
