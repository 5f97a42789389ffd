"""Temporary: replaced by engine/timestamps.py (leaves branch)."""
from datetime import datetime


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
