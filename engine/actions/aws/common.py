"""Pieces every aws verb shares: argument schemas, waiting, sizes."""
from __future__ import annotations

import time
from typing import Any, Callable

from engine.actions.base import ActionError, Context
from engine.durations import parse_duration

REGION_PROP = {"type": "string", "minLength": 1,
               "description": "AWS region for this step (default: the target's aws.region, "
                              "else boto3's default chain)"}
WAIT_PROP = {"type": "boolean", "description": "wait until the change has taken effect"}
DURATION_PROP = {"type": ["string", "number"], "description": "a duration: 90, \"90s\", \"15m\""}
COUNT_PROP = {"type": "integer", "minimum": 0}


def schema(properties: dict, required: list[str], **extra: Any) -> dict:
    return {"type": "object", "additionalProperties": False, "required": required,
            "properties": {**properties, "region": REGION_PROP}, **extra}


def seconds(value: Any, default: float) -> float:
    """A duration argument in seconds (``"15m"`` -> 900)."""
    if value is None:
        return default
    try:
        return float(parse_duration(value))
    except (TypeError, ValueError) as exc:
        raise ActionError(f"bad duration {value!r}: {exc}") from None


def poll(ctx: Context, probe: Callable[[], tuple[bool, str]], *, timeout: float, delay: float,
         what: str) -> str:
    """Call ``probe()`` -> ``(done, state)`` until done; ActionError naming the last state
    when ``timeout`` (or the step's own deadline) passes first. Returns the final state."""
    limit = ctx.time_left(timeout)
    end = time.monotonic() + (limit if limit is not None else timeout)
    while True:
        done, state = probe()
        if done:
            return state
        if time.monotonic() + delay > end:
            raise ActionError(f"{what}: not done after {timeout:g} s (last seen: {state})")
        if ctx.cancelled.wait(delay):
            raise ActionError(f"{what}: interrupted (last seen: {state})")


def human_bytes(size: int | float | None) -> str:
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop always returns


def arrow(before: Any, after: Any) -> str:
    """``0→2`` when a value changes, ``10`` when it does not."""
    return f"{before}" if before == after else f"{before}→{after}"


def service_touched(ctx: Context, service: str) -> set[str]:
    """What an AWS step reads or changes, for the rehearsal: one service of one account and
    region (the step's target) — finer than the target, so a probe of RDS still runs
    while an EKS change is only planned."""
    target = (ctx.target or {}).get("name", "default")
    return {f"aws:{target}:{service}"}
