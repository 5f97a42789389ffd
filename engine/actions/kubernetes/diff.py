"""What a change does to an object: the live object against the server's answer.

``changes(before, after)`` lists the paths whose value differs, ignoring what every
write changes by itself (``resourceVersion``, ``generation``, ``managedFields``,
timestamps): "changed" means this list is not empty, as in Ansible's kubernetes.core
after check mode "showed changes that did not happen" (ansible#66870).
``revert_patch`` is the JSON merge patch that undoes them (a step's ``previous``).
Secret values never leave this module: they are shown as ``***``.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["Change", "changes", "comparable", "describe", "revert_patch", "dropped_paths",
           "without_secrets", "reappliable", "MASK"]

MASK = "***"
#: what the server changes on every write, and the bookkeeping nobody asks for
_NOISE_METADATA = ("resourceVersion", "generation", "managedFields", "creationTimestamp",
                   "selfLink", "uid")
_TIMESTAMP_KEYS = ("Time", "Timestamp", "time", "timestamp")
_ABSENT = object()
_SHOWN_CHANGES = 3
#: fields the server takes but never shows: a Secret's stringData becomes data
_WRITE_ONLY = ("stringData",)


@dataclass(frozen=True)
class Change:
    path: str
    before: Any
    after: Any

    def shown(self, secret: bool = False) -> str:
        if secret:
            return f"{self.path} (changed)"
        return f"{self.path} {_value(self.before)} → {_value(self.after)}"


def comparable(obj: dict | None) -> dict:
    """``obj`` without the fields every write changes by itself."""
    if not obj:
        return {}
    clean = copy.deepcopy(obj)
    metadata = clean.get("metadata") or {}
    for key in _NOISE_METADATA:
        metadata.pop(key, None)
    return _drop_timestamps(clean)


def _drop_timestamps(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_timestamps(v) for k, v in value.items()
                if not (isinstance(k, str) and k.endswith(_TIMESTAMP_KEYS))}
    if isinstance(value, list):
        return [_drop_timestamps(v) for v in value]
    return value


def changes(before: dict | None, after: dict | None) -> list[Change]:
    """Every path whose value differs between two versions of an object."""
    found: list[Change] = []
    _walk(comparable(before), comparable(after), "", found)
    return found


def _walk(before: Any, after: Any, path: str, found: list[Change]) -> None:
    if before == after:
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in list(before) + [k for k in after if k not in before]:
            _walk(before.get(key, _ABSENT), after.get(key, _ABSENT), _join(path, key), found)
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (old, new) in enumerate(zip(before, after)):
            _walk(old, new, f"{path}[{index}]", found)
    else:
        found.append(Change(path or ".", _plain(before), _plain(after)))


def _join(path: str, key: str) -> str:
    key = str(key)
    if "." in key or "/" in key:
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _plain(value: Any) -> Any:
    return None if value is _ABSENT else value


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value if value else '""'
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(found: list[Change], secret: bool = False) -> str:
    """``data.DATABASE_HOST a → b; spec.replicas 3 → 5 (and 2 more)``."""
    shown = "; ".join(c.shown(secret) for c in found[:_SHOWN_CHANGES])
    more = len(found) - _SHOWN_CHANGES
    return shown + (f" (and {more} more)" if more > 0 else "")


def revert_patch(before: dict | None, after: dict | None) -> dict:
    """The JSON merge patch (RFC 7386) that takes ``after`` back to ``before``."""
    return _revert(comparable(before), comparable(after))


def _revert(before: dict, after: dict) -> dict:
    patch: dict = {}
    for key in list(before) + [k for k in after if k not in before]:
        old, new = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            patch[key] = _revert(old, new)
        else:
            patch[key] = None if old is _ABSENT else old
    return patch


def dropped_paths(patch: Any, result: dict) -> list[str]:
    """Paths a merge/strategic patch sets that the server's answer does not have: fields
    it does not know and silently dropped (a typo such as ``spec.replicaz``)."""
    missing: list[str] = []
    if isinstance(patch, dict):
        _dropped(patch, result or {}, "", missing)
    return missing


def _dropped(patch: dict, result: Any, path: str, missing: list[str]) -> None:
    for key, value in patch.items():
        if not isinstance(key, str) or key.startswith("$"):
            continue  # strategic-merge directives
        if not value:
            continue  # a deletion (null), or a zero value the answer omits (``paused: false``)
        if not path and key in _WRITE_ONLY:
            continue
        here = _join(path, key)
        if not isinstance(result, dict) or key not in result:
            missing.append(here)
        elif isinstance(value, dict):
            _dropped(value, result[key], here, missing)


def is_secret(obj: dict | None) -> bool:
    return bool(obj) and obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"


def without_secrets(obj: Any) -> Any:
    """A Secret with its values masked (keys kept); anything else unchanged."""
    if isinstance(obj, list):
        return [without_secrets(item) for item in obj]
    if not isinstance(obj, dict) or not is_secret(obj):
        return obj
    masked = dict(obj)
    for field in ("data", "stringData"):
        if isinstance(obj.get(field), dict):
            masked[field] = {key: MASK for key in obj[field]}
    metadata = dict(obj.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    if "kubectl.kubernetes.io/last-applied-configuration" in annotations:
        annotations["kubectl.kubernetes.io/last-applied-configuration"] = MASK
        metadata["annotations"] = annotations
        masked["metadata"] = metadata
    return masked


def reappliable(obj: dict) -> dict:
    """The object as a manifest ``kubernetes.apply`` can create again: no status, no
    server bookkeeping."""
    manifest = {k: v for k, v in obj.items() if k != "status"}
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items()
                if k not in _NOISE_METADATA and k not in ("deletionTimestamp",
                                                           "deletionGracePeriodSeconds")}
    manifest["metadata"] = metadata
    return manifest
