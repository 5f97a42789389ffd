"""UTC timestamps as the journal writes them (``2024-05-01T12:00:00.123Z``): the one
formatter and parser."""
from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["now_ts", "parse_ts", "epoch", "seconds_between", "age"]


def now_ts() -> str:
    """Now, in UTC, to the millisecond: ``2024-05-01T12:00:00.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(ts: str) -> datetime:
    """An aware datetime from an ISO 8601 timestamp (``Z`` or an offset; none means UTC).

    Raises ``ValueError`` for a string that is not one.
    """
    parsed = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def epoch(ts: str) -> float:
    """Seconds since the Unix epoch of timestamp ``ts``."""
    return parse_ts(ts).timestamp()


def seconds_between(start: str, end: str) -> float:
    """Seconds from timestamp ``start`` to timestamp ``end``."""
    return (parse_ts(end) - parse_ts(start)).total_seconds()


def age(ts: str) -> float:
    """Seconds since timestamp ``ts``."""
    return (datetime.now(timezone.utc) - parse_ts(ts)).total_seconds()
