"""Pausing the cyclic garbage collector while building large acyclic structures.

Loading a 10,000-step runbook or replaying a 20,000-event journal allocates
hundreds of thousands of dicts and lists with no reference cycles; the
collector's repeated passes over them cost a third of the time. They are
paused for those bounded phases only.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager


@contextmanager
def paused_gc():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
