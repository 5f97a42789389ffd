"""A run's timeline from its journal: bars per step, waits, pauses, the RTO budget.

Times are seconds since the run's first event. A real run's bars come from the
events' timestamps (each attempt its own segment, a retry a tick); a dry-run has
no times of its own, so its bars are the plan's estimates laid end to end.
The geometry (pixels) is computed here so the templates only draw rectangles.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from engine.durations import format_duration
from engine.journal import events as ev
from engine.timestamps import seconds_between

WIDTH = 960        # the SVG's width in px
LABEL = 230        # the step-name column
ROW = 22           # px per step row
TOP = 34           # room for the axis and the bands' labels
OPERATOR_ACTIONS = frozenset({"manual", "approve"})
_END_CLASS = {ev.STEP_SUCCEEDED: "ok", ev.STEP_FAILED: "failed", ev.STEP_SKIPPED: "skipped",
              ev.STEP_PLANNED: "planned", ev.STEP_PAUSED: "waiting"}


@dataclass
class Segment:
    start: float
    end: float
    kind: str           # ok, changed, failed, ignored, attempt, operator, waiting, rollback, planned
    title: str = ""


@dataclass
class Row:
    key: str
    label: str
    rollback: bool = False
    segments: list[Segment] = field(default_factory=list)
    retries: list[float] = field(default_factory=list)
    open_at: float | None = None        # an attempt started and not ended (yet)
    action: str = ""


@dataclass
class Band:
    start: float
    end: float
    kind: str           # paused, interrupted, rollback
    title: str


def step_key(step: dict) -> str:
    """One row per step invocation: a loop item or a target is a row of its own."""
    key = step["id"]
    if "target" in step:
        key += f"@{step['target']}"
    return key + (f"#{step['item']}" if "item" in step else "")


def build_timeline(events: list, now: float | None = None) -> dict:
    """The timeline as plain data: rows, bands, the RTO line and their pixel geometry."""
    if not events:
        return {"rows": [], "bands": [], "total": 0, "estimated": False}
    dry_run = bool(events[0].data.get("dry_run"))
    rows, bands, total = (_estimated(events) if dry_run else _measured(events, now))
    rto = events[0].data.get("rto")
    return _layout(rows, bands, total, rto, estimated=dry_run)


def _measured(events: list, now: float | None):
    t0 = events[0].ts
    rows: dict[str, Row] = {}
    bands: list[Band] = []
    last_t, paused_at, last_event = 0.0, None, None
    for event in events:
        t = max(0.0, seconds_between(t0, event.ts))
        if event.type == ev.RUN_RESUMED:
            bands.append(_gap_band(paused_at, last_t, t, last_event))
            paused_at = None
        elif event.type in ev.RUN_ENDS:
            paused_at = (t, event)
        if event.step:
            _apply(rows, event, t)
        elif event.type == ev.ROLLBACK_STARTED:
            bands.append(Band(t, t, "rollback", "rollback: " + str(event.data.get("reason", ""))))
        elif event.type == ev.ROLLBACK_COMPLETED and bands and bands[-1].kind == "rollback":
            bands[-1].end = t
        if event.type not in ev.AFTERWORDS:
            last_t, last_event = t, event
    end = max(last_t, now if now is not None else 0.0)
    for row in rows.values():   # still running (live view) or in doubt after a crash
        if row.open_at is not None:
            row.segments.append(Segment(row.open_at, end, "running", "running"))
    return list(rows.values()), bands, end


def _gap_band(paused_at, last_t: float, t: float, last_event) -> Band:
    """What the run was doing between its last event and a resume."""
    if paused_at is None:
        return Band(last_t, t, "interrupted", "interrupted (no end event: crash or kill)")
    start, end_event = paused_at
    reason = str(end_event.data.get("message") or end_event.type).splitlines()[0]
    kind = "paused" if end_event.type == ev.RUN_PAUSED else "interrupted"
    return Band(start, t, kind, f"{end_event.type.split('.')[1]}: {reason}")


def _apply(rows: dict, event, t: float) -> None:
    step = event.step
    key = step_key(step)
    path = str(step.get("path", ""))
    row = rows.get(key)
    if row is None:
        row = rows[key] = Row(key, _label(step), rollback=".rollback" in path)
    if event.type == ev.STEP_STARTED:
        row.open_at = t
        row.action = str(event.data.get("action", ""))
    elif event.type == ev.STEP_RETRY and row.open_at is not None:
        row.segments.append(Segment(row.open_at, t, "attempt",
                                    f"attempt {event.data.get('attempt')} failed: "
                                    f"{event.data.get('message', '')}"))
        row.retries.append(t)
        row.open_at = t
    elif event.type in _END_CLASS:
        start = row.open_at if row.open_at is not None else t
        row.segments.append(Segment(start, t, _kind(row, event), _title(event)))
        row.open_at = None


def _kind(row: Row, event) -> str:
    if row.rollback:
        return "rollback"
    kind = _END_CLASS[event.type]
    if event.type == ev.STEP_SUCCEEDED and row.action in OPERATOR_ACTIONS:
        return "operator"
    if kind == "ok" and event.data.get("changed"):
        return "changed"
    if kind == "failed" and event.data.get("ignored"):
        return "ignored"
    return kind


def _title(event) -> str:
    data = event.data
    status = event.type.split(".")[1]
    what = data.get("message") or data.get("reason") or data.get("plan") or ""
    return f"{status}: {what}" if what else status


def _label(step: dict) -> str:
    label = step.get("name") or step.get("id", "")
    if "target" in step:
        label += f" [{step['target']}]"
    return label + (f" [item {step['item']}]" if "item" in step else "")


def _estimated(events: list):
    """A dry-run: each planned or probed step after the previous one, by its estimate."""
    rows: dict[str, Row] = {}
    cursor = 0.0
    for event in events:
        if not event.step or event.type not in (ev.STEP_PLANNED, ev.STEP_SUCCEEDED,
                                                ev.STEP_FAILED, ev.STEP_SKIPPED):
            continue
        key = step_key(event.step)
        length = float(event.data.get("estimate") or event.data.get("elapsed") or 0.0)
        kind = "planned" if event.type == ev.STEP_PLANNED else _END_CLASS[event.type]
        if event.data.get("finding"):
            kind = "failed"
        row = rows.setdefault(key, Row(key, _label(event.step)))
        row.segments.append(Segment(cursor, cursor + length, kind, _title(event)))
        cursor += length
    return list(rows.values()), [], cursor


def _layout(rows: list[Row], bands: list[Band], total: float, rto: float | None,
            estimated: bool) -> dict:
    scale_end = _scale_end(total, rto)
    px = (WIDTH - LABEL - 16) / scale_end if scale_end else 0.0

    def x(t: float) -> float:
        return round(LABEL + min(t, scale_end) * px, 1)

    height = TOP + ROW * max(len(rows), 1) + 8
    out_rows = []
    for index, row in enumerate(rows):
        y = TOP + index * ROW
        segments = [{**asdict(s), "x": x(s.start), "w": max(2.0, round(x(s.end) - x(s.start), 1)),
                     "y": y + 4, "label": f"{format_duration(s.end - s.start)} {s.title}"}
                    for s in row.segments]
        out_rows.append({"key": row.key, "label": row.label, "rollback": row.rollback, "y": y,
                         "segments": segments, "retries": [x(t) for t in row.retries]})
    return {
        "estimated": estimated, "total": round(total, 3), "width": WIDTH, "height": height,
        "label_width": LABEL, "row_height": ROW, "rows": out_rows,
        "bands": [{**asdict(b), "x": x(b.start), "w": max(2.0, round(x(b.end) - x(b.start), 1)),
                   "duration": format_duration(b.end - b.start)} for b in bands],
        "rto": _rto_line(rto, scale_end, x), "ticks": _ticks(scale_end, x),
    }


def _scale_end(total: float, rto: float | None) -> float:
    """The axis shows the whole run, and the RTO too unless it dwarfs the run."""
    if rto and rto <= 3 * max(total, 1.0):
        return max(total, rto) * 1.03
    return max(total, 1.0) * 1.03


def _rto_line(rto: float | None, scale_end: float, x) -> dict | None:
    if not rto:
        return None
    on_scale = rto <= scale_end
    label = f"RTO {format_duration(rto)}" + ("" if on_scale else " (off scale →)")
    return {"seconds": rto, "x": x(rto), "on_scale": on_scale, "label": label}


def _ticks(scale_end: float, x) -> list[dict]:
    if not scale_end:
        return []
    steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800]
    step = next((s for s in steps if scale_end / s <= 8), steps[-1])
    count = int(scale_end // step)
    return [{"x": x(i * step), "label": format_duration(i * step)} for i in range(count + 1)]
