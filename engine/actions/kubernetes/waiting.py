"""Waiting for objects: read, judge, then sleep on a watch until something changes.

Each round lists the object (or the selection) — a list answers "absent" without an
error and gives the resourceVersion to watch from —, asks ``judge`` whether the wait
is over, and otherwise blocks on a watch until the next event (or a chunk of the
time left). A watch that fails (a proxy that cuts streams, RBAC without ``watch``)
turns the rest of the wait into polling every ``interval``. The step's deadline and
Ctrl-C bound every round.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

from engine.actions.base import ActionError
from engine.actions.kubernetes.objects import Located

__all__ = ["wait_until", "Judge"]

#: (state) -> (done, what we are waiting for); state: the object (None: absent) or a list
Judge = Callable[[Any], "tuple[bool, str]"]
WATCH_CHUNK = 30


def wait_until(ctx, located: Located, judge: Judge, timeout: float,
               interval: float = 1.0) -> tuple[Any, str, float]:
    """Block until ``judge`` says done; (state, its message, seconds waited)."""
    start = time.monotonic()
    end = start + ctx.time_left(timeout)
    watching = True
    while True:
        state, version = _fetch(ctx, located)
        done, message = judge(state)
        if done:
            return state, message, round(time.monotonic() - start, 3)
        left = end - time.monotonic()
        if left <= 0:
            raise ActionError(f"{located.shown()}: not done after {timeout:g}s: {message}")
        if ctx.cancelled.is_set():
            raise ActionError(f"{located.shown()}: wait cancelled: {message}")
        if watching:
            watching = _next_event(ctx, located, version, min(left, WATCH_CHUNK))
        else:
            ctx.cancelled.wait(min(interval, left))


def _fetch(ctx, located: Located) -> tuple[Any, str]:
    items, version = located.list_items(ctx)
    if located.ref.name:
        return (items[0] if items else None), version
    return items, version


def _next_event(ctx, located: Located, version: str, seconds: float) -> bool:
    """Block until an event about the object arrives or ``seconds`` pass; False when
    watching does not work here (the caller polls from then on)."""
    if seconds < 1:
        ctx.cancelled.wait(seconds)
        return True
    try:
        with contextlib.closing(located.watch(ctx, int(seconds), version)) as events:
            for event in events:
                if event.get("type") != "BOOKMARK":
                    return True
        return True
    except Exception:  # any failure of the stream: fall back to polling, never fail the wait
        return False
