"""Turning any value into JSON without losing its meaning: the one coercion.

Used for journal events (whatever an action put in its data) and for database
rows (Decimal, dates, intervals, bytea ...).
"""
from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Callable

__all__ = ["json_safe"]


def _decimal(value: Decimal) -> Any:
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value():
        return int(value)
    return float(value)


_SCALARS: list[tuple[type | tuple[type, ...], Callable[[Any], Any]]] = [
    (bool, lambda v: v),
    (int, lambda v: v),
    (float, lambda v: v if math.isfinite(v) else str(v)),
    (str, lambda v: v),
    (Decimal, _decimal),
    ((datetime, date, time), lambda v: v.isoformat()),
    (timedelta, lambda v: v.total_seconds()),
    ((bytes, bytearray, memoryview), lambda v: bytes(v).hex()),
]


def json_safe(value: Any) -> Any:
    """``value`` as something ``json.dumps`` accepts (strict JSON: no NaN).

    Mappings get string keys; lists, tuples and sets become lists; Decimals
    int when integral else float; dates and times ISO 8601 strings;
    intervals seconds; bytes hex; non-finite floats and anything else
    ``str()``. Also fit as ``json.dumps(default=json_safe)``.
    """
    if value is None:
        return None
    for types, convert in _SCALARS:
        if isinstance(value, types):
            return convert(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    return str(value)
