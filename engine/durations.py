"""Durations as runbooks write them (90, "90s", "15m", "1h30m", "250ms") and as people read
them (0.4s, 3m05s, 1h02m)."""
from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(
    r"^\s*(?:(?P<d>\d+)d)?\s*(?:(?P<h>\d+)h)?\s*(?:(?P<m>\d+)m(?!s))?\s*"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?\s*(?:(?P<ms>\d+)ms)?\s*$")
# (?=.*\d): every part is optional, but an empty or blank string is not a duration.
DURATION_PATTERN = (r"^(?=.*\d)\s*(\d+(\.\d+)?|(\d+d)?\s*(\d+h)?\s*(\d+m)?\s*(\d+(\.\d+)?s)?\s*(\d+ms)?)\s*$")
DURATION_HELP = "a duration such as 90, 90s, 15m, 1h30m, 500ms"


def parse_duration(value: Any) -> float:
    """Seconds in ``value`` (90, "90", "90s", "15m", "1h30m", "2d", "250ms"). Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not {DURATION_HELP}: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    match = _DURATION.match(text)
    if not text or not match or not any(match.groupdict().values()):
        raise ValueError(f"not {DURATION_HELP}: {value!r}")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return (parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
            + parts["ms"] / 1000)


def format_duration(seconds: float | None) -> str:
    """Short human form: 0.4s, 12s, 3m05s, 1h02m."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
