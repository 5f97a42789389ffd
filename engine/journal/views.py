"""Reading runs back: ``runbook runs`` and ``runbook show`` (both replay the journal only)."""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.journal import events as ev
from engine.journal.replay import step_key
from engine.journal.events import Event
from engine.journal.file import JOURNAL_NAME
from engine.timestamps import seconds_between

STATUS_BY_END = {ev.RUN_COMPLETED: "completed", ev.RUN_FAILED: "failed",
                 ev.RUN_ABORTED: "aborted", ev.RUN_INTERRUPTED: "interrupted",
                 ev.RUN_PAUSED: "paused"}


@dataclass
class RunSummary:
    run_id: str
    runbook: str
    status: str
    operator: str
    started: str
    duration: float | None
    dry_run: bool = False
    drill: str | None = None  # the drill it belongs to (``runbook drill``)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _first_and_last(path: Path) -> tuple[dict | None, dict | None]:
    """The first and last complete events, without reading a long journal whole (the last
    that is not an afterword such as a notification sent after the run's end)."""
    with open(path, "rb") as handle:
        first_line = handle.readline()
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 256 * 1024))
        tail = handle.read().split(b"\n")
    first = _loads(first_line)
    for line in reversed(tail):
        last = _loads(line)
        if last is not None and last.get("type") not in ev.AFTERWORDS:
            return first, last
    return first, first


def _loads(line: bytes) -> dict | None:
    try:
        return json.loads(line) if line.strip() else None
    except ValueError:
        return None


def is_held(directory: Path) -> bool:
    """True when a live process holds the run's lock."""
    try:
        fd = os.open(directory / "lock", os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def summarize(directory: Path) -> RunSummary | None:
    path = directory / JOURNAL_NAME
    if not path.exists():
        return None
    first, last = _first_and_last(path)
    return summary_from(first, last, directory.name, lambda: is_held(directory))


def summary_from(first: dict | None, last: dict | None, run_id: str,
                 held: Callable[[], bool]) -> RunSummary | None:
    """A run's summary from its first and last events, whatever the backend.

    ``held()`` says whether a live process holds the run; it is asked only when
    the last event does not end the run (running, or interrupted by a crash).
    """
    if first is None:
        return None
    status = STATUS_BY_END.get(last["type"]) if last else None
    if status is None:
        status = "running" if held() else "interrupted"
    data = first.get("data", {})
    return RunSummary(run_id=run_id, runbook=data.get("runbook", {}).get("name", "?"),
                      status=status, operator=first.get("operator", "?"),
                      started=first.get("ts", ""), duration=_seconds_between(first, last),
                      dry_run=bool(data.get("dry_run")), drill=data.get("drill"))


def _seconds_between(first: dict, last: dict | None) -> float | None:
    if not last:
        return None
    try:
        return round(seconds_between(first["ts"], last["ts"]), 3)
    except (KeyError, ValueError):
        return None


def list_runs(state_dir: Path) -> list[RunSummary]:
    root = Path(state_dir) / "runs"
    if not root.is_dir():
        return []
    runs = [summarize(d) for d in root.iterdir() if d.is_dir()]
    return sorted((r for r in runs if r), key=lambda r: r.started)


@dataclass
class StepView:
    key: str
    name: str
    status: str = "pending"
    attempts: int = 0
    duration: float | None = None
    verifications: list[str] = field(default_factory=list)
    operators: list[str] = field(default_factory=list)
    message: str = ""


_STATUS = {ev.STEP_STARTED: "in doubt", ev.STEP_SUCCEEDED: "ok", ev.STEP_FAILED: "failed",
           ev.STEP_SKIPPED: "skipped", ev.STEP_PLANNED: "planned", ev.STEP_PAUSED: "waiting"}


def step_views(events: list[Event]) -> list[StepView]:
    """One row per step (and target, and loop item), in the order they first appeared."""
    views: dict[str, StepView] = {}
    for event in events:
        if not event.step:
            continue
        key = step_key(event.step)
        name = event.step.get("name", key)
        if "target" in event.step:  # a fleet's hosts are counted one by one
            name = f"{name} [{event.step['target']}]"
        view = views.setdefault(key, StepView(key, name))
        _apply(view, event)
    return list(views.values())


def _apply(view: StepView, event: Event) -> None:
    data = event.data
    if event.type in _STATUS:
        view.status = _STATUS[event.type]
        if event.type == ev.STEP_SUCCEEDED and data.get("changed"):
            view.status = "changed"
        if event.type == ev.STEP_FAILED and data.get("ignored"):
            view.status = "failed (ignored)"
    if event.type in ev.STEP_ENDS:
        if event.type not in (ev.STEP_SKIPPED, ev.STEP_PAUSED):
            view.attempts += data.get("attempts", 1)
        view.duration = data.get("elapsed", view.duration)
        view.message = str(data.get("message") or data.get("reason") or data.get("plan") or "")
    if event.type == ev.STEP_RESCUED:
        view.status = "rescued"
    if event.type in (ev.VERIFY_PASSED, ev.VERIFY_FAILED):
        mark = "passed" if event.type == ev.VERIFY_PASSED else "FAILED"
        view.verifications.append(f"{' and '.join(data.get('that', []))}: {mark}")
    if event.type.startswith(("operator.", "approval.")) and event.operator not in view.operators:
        view.operators.append(event.operator)
