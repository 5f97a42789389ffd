"""Registered values: what ``register: x`` exposes, and how resume rebuilds it.

``x.ok``, ``x.changed``, ``x.failed``, ``x.skipped``, ``x.elapsed``,
``x.message``, ``x.attempts`` plus every key of the action's ``data``; a loop
registers ``x.results``.
"""
from __future__ import annotations

from typing import Any

from engine.actions.base import Result

STANDARD_KEYS = frozenset({"ok", "changed", "failed", "skipped", "elapsed", "message",
                           "attempts"})


def result_value(result: Result, elapsed: float) -> dict:
    value = dict(result.data)
    value.update(ok=result.ok, changed=result.changed, failed=not result.ok, skipped=False,
                 elapsed=round(elapsed, 3), message=result.message)
    return value


def failed_value(message: str) -> dict:
    return {"ok": False, "changed": False, "failed": True, "skipped": False, "elapsed": 0.0,
            "message": message}


def skipped_value() -> dict:
    return {"ok": True, "changed": False, "failed": False, "skipped": True, "elapsed": 0.0,
            "message": "skipped"}


def loop_value(results: list) -> dict:
    real = [r for r in results if isinstance(r, dict)]
    return {"results": results, "ok": all(r.get("ok", True) for r in real),
            "changed": any(r.get("changed") for r in real),
            "failed": any(r.get("failed") for r in real), "skipped": False,
            "elapsed": round(sum(r.get("elapsed", 0) for r in real), 3), "message": ""}


def restored_value(done: dict) -> Any:
    """A completed step's registered value, rebuilt from its journaled end event's data."""
    value = done.get("value")
    if not isinstance(value, dict):
        return value  # hidden (no_log) or absent
    if value.get("skipped") or "reason" in done:
        return {**skipped_value(), **value}
    ok = value.get("ok", not done.get("ignored"))
    return {"ok": ok, "changed": bool(done.get("changed")), "failed": not ok,
            "skipped": False, "elapsed": done.get("elapsed", 0.0),
            "message": done.get("message", ""), "attempts": done.get("attempts", 1), **value}
