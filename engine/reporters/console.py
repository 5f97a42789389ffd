"""The human console: one line per step, the RTO clock, and a recap.

Colour only on a terminal (rich); plain text otherwise, so logs and pipes
stay readable and cheap.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import Counter

from engine.journal import events as ev
from engine.journal.events import Event
from engine.durations import format_duration
from engine.timestamps import epoch
from engine.reporters.live_line import LiveLine

STYLES = {"ok": "green", "changed": "yellow", "skipped": "cyan", "failed": "bold red",
          "would change": "magenta", "would run if": "magenta", "would check": "blue",
          "finding": "bold yellow", "ignored": "red", "retry": "yellow", "notified": "green",
          "notify failed": "bold red", "would notify": "magenta"}
#: steps that talk to the operator on the terminal themselves: no live line over their prompts
OPERATOR_ACTIONS = frozenset({"manual", "approve"})
#: where a plan row's time comes from: earlier runs, the author, a default, this rehearsal
_SOURCE_TAGS = {"median": "history", "author's estimate": "author", "default": "default"}
MESSAGE_WIDTH = 160  # longer messages are cut (with an ellipsis), never dropped


class ConsoleReporter:
    def __init__(self, stream=None, color: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        self.color = self.stream.isatty() if color is None else color
        self._console = None
        if self.color:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        self.counts: Counter = Counter()
        self.per_target: dict[str, Counter] = {}
        self.plan: list[tuple[str, str, float | None]] = []
        self.rto: float | None = None
        self.started = time.monotonic()
        self.dry_run = False
        self.lock = threading.RLock()   # the live line's thread prints too
        self.live = LiveLine(self)

    # --- output ---
    def _line(self, status: str, text: str, suffix: str = "") -> None:
        tag = f"{status:<12}"
        if self._console is not None:
            from rich.markup import escape

            style = STYLES.get(status, "")
            self._console.print(f"[{style}]{escape(tag)}[/] {escape(text)}"
                                + (f" [{self._clock_style()}]{escape(suffix)}[/]"
                                   if suffix else ""))
        else:
            self.stream.write(f"{tag} {text}{'  ' + suffix if suffix else ''}\n")
            self.stream.flush()

    def _clock(self) -> str:
        elapsed = format_duration(time.monotonic() - self.started)
        return f"[{elapsed} of RTO {format_duration(self.rto)}]" if self.rto else f"[{elapsed}]"

    def _clock_style(self) -> str:
        """Dim while well within the RTO; yellow past 80 % of it; red once it is exceeded."""
        if not self.rto:
            return "dim"
        used = (time.monotonic() - self.started) / self.rto
        return "bold red" if used > 1 else "yellow" if used > 0.8 else "dim"

    def clock_text(self):
        from rich.text import Text

        return Text(self._clock(), style=self._clock_style())

    def write(self, text: str, style: str | None = None) -> None:
        if self._console is not None:
            self._console.print(text, markup=False, style=style)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    # --- events ---
    def __call__(self, event: Event) -> None:
        handler = getattr(self, "on_" + event.type.replace(".", "_"), None)
        if handler is None or self.closed:
            return
        with self.lock:
            try:
                if event.type in ev.STEP_ENDS and event.step:
                    self.live.ended(_key(event.step))
                handler(event)
            except (BrokenPipeError, ValueError):
                # The reader went away (``| head``): the run goes on, the journal keeps all.
                self.closed = True
                self.live.close()

    closed = False

    def on_run_started(self, event: Event) -> None:
        data = event.data
        self.rto = data.get("rto")
        self.dry_run = bool(data.get("dry_run"))
        mode = "DRY RUN of" if self.dry_run else "Running"
        if event.type == ev.RUN_RESUMED:
            mode = "Resuming dry run of" if self.dry_run else "Resuming"
            if data.get("run_started"):  # one RTO clock: the run's, since it first started
                self.started = time.monotonic() - (time.time() - epoch(data["run_started"]))
        name = data.get("runbook", {}).get("name", "")
        self.write(f"{mode} '{name}' — run {event.run_id} by {event.operator}"
                   + (f", RTO {format_duration(self.rto)}" if self.rto else ""), "bold")
        sources = data.get("input_sources") or {}
        if sources:
            shown = ", ".join(f"{k}={_shortened(str(v))[:40]} ({sources.get(k, '?')})"
                              for k, v in (data.get("inputs") or {}).items())
            self.write(f"Inputs: {shown}")

    on_run_resumed = on_run_started

    def on_step_started(self, event: Event) -> None:
        if event.data.get("action") not in OPERATOR_ACTIONS and event.step:
            self.live.started(_key(event.step), self._label(event))

    def _label(self, event: Event) -> str:
        step = event.step or {}
        label = step.get("name") or step.get("id", "")
        where = [str(step["target"])] if "target" in step else []
        where += [f"item {step['item']}"] if "item" in step else []
        return f"{label} [{', '.join(where)}]" if where else label

    def _count(self, event: Event, status: str) -> None:
        """Count the step, and per host (target) for the fleet lines of the recap."""
        self.counts[status] += 1
        target = (event.step or {}).get("target")
        if target is not None:
            self.per_target.setdefault(str(target), Counter())[status] += 1

    def on_step_succeeded(self, event: Event) -> None:
        status = "changed" if event.data.get("changed") else "ok"
        self._count(event, status)
        message = _shortened(" ".join(str(event.data.get("message") or "").split()))
        self._line(status, self._label(event) + (f" — {message}" if message else ""),
                   f"{format_duration(event.data.get('elapsed'))} {self._clock()}")
        if self.dry_run:
            self.plan.append((self._label(event), "ran (read-only)",
                              event.data.get("elapsed"), "now"))

    def on_step_failed(self, event: Event) -> None:
        if event.data.get("finding"):
            status = "finding"
        elif event.data.get("ignored"):
            status = "ignored"
        else:
            status = "failed"
        self._count(event, status)
        self._line(status, f"{self._label(event)} — {event.data.get('message', '')}",
                   f"{format_duration(event.data.get('elapsed'))} {self._clock()}")
        if self.dry_run:
            self.plan.append((self._label(event), "FINDING: " + str(event.data.get("message", "")),
                              event.data.get("elapsed"), "now"))

    def on_step_skipped(self, event: Event) -> None:
        self._count(event, "skipped")
        self._line("skipped", f"{self._label(event)} — {event.data.get('reason', '')}")

    def on_step_planned(self, event: Event) -> None:
        if event.data.get("finding"):
            status = "finding"  # the service refused the plan: it would fail for real
        elif event.data.get("conditional"):
            status = "would run if"
        elif event.data.get("mutates", True):
            status = "would change"
        else:
            status = "would check"
        self._count(event, status)
        self._line(status, f"{self._label(event)}: {event.data.get('plan', '')}")
        if event.data.get("finding"):
            self._line("finding", f"{self._label(event)} — {event.data['finding']}")
        self.plan.append((self._label(event), str(event.data.get("plan", "")),
                          event.data.get("estimate", event.data.get("expected_duration")),
                          _SOURCE_TAGS.get(str(event.data.get("estimate_source", ""))
                                           .split(" of ")[0], "")))

    def on_step_retry(self, event: Event) -> None:
        if event.step:
            self.live.retried(_key(event.step))
        self._line("retry", f"{self._label(event)} — attempt {event.data.get('attempt')} "
                            f"failed: {event.data.get('message', '')}")

    def on_verify_failed(self, event: Event) -> None:
        if self.dry_run:
            return  # the step's finding line says it once
        self._line("failed", f"{self._label(event)} — verify: {event.data.get('message', '')}")

    def on_notification_sent(self, event: Event) -> None:
        data = event.data
        self._line("notified", f"{_notified(data)}: {data.get('result', '')}"
                   + (" (built-in text: the message could not be rendered)"
                      if data.get("fallback") else ""))

    def on_notification_failed(self, event: Event) -> None:
        self._line("notify failed", f"{_notified(event.data)}: {event.data.get('error', '')}")

    def on_notification_planned(self, event: Event) -> None:
        data = event.data
        plan = data.get("plan") or f"cannot send: {data.get('error', '')}"
        self._line("would notify", f"{_notified(data)}: {plan}")

    def on_run_completed(self, event: Event) -> None:
        self._recap(event)

    on_run_failed = on_run_interrupted = on_run_aborted = on_run_paused = on_run_completed

    def _recap(self, event: Event) -> None:
        self.live.close()
        data = event.data
        if self.dry_run and self.plan:
            self._plan_table(data)
        findings = data.get("findings") or []
        if findings:
            self.write(f"\nFindings ({len(findings)}):", "bold yellow")
            for finding in findings:
                self.write(f"  - {finding['name']} ({finding['at']}): {finding['message']}")
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())) or "no steps"
        elapsed = format_duration(data.get("elapsed"))
        rto = f" of RTO {format_duration(self.rto)}" if self.rto else ""
        status = data.get("status", event.type.split(".")[1])
        self.write(f"\nRecap: {status.upper()} — {counts} — {elapsed}{rto} (run {event.run_id})",
                   RECAP_STYLES.get(status, "bold"))
        if data.get("rto_missed_by"):
            self.write(f"  RTO MISSED by {format_duration(data['rto_missed_by'])}", "bold red")
        for target, per in sorted(self.per_target.items()):
            self.write(f"  {target}: " + ", ".join(f"{k}={v}" for k, v in sorted(per.items())))
        if data.get("message") and status != "completed":
            self.write(f"  {data['message']}")

    def _plan_table(self, data: dict) -> None:
        self.write("\nPlan:")
        width = max(len(row[0]) for row in self.plan)
        width = min(width, 48)
        for label, what, expected, source in self.plan:
            self.write(f"  {label[:width]:<{width}}  {format_duration(expected):>7} "
                       f"{source:<7} {what}")
        estimate = data.get("estimate") or 0
        low = data.get("estimate_low", estimate)
        total = format_duration(estimate) if low == estimate else (
            f"{format_duration(low)}–{format_duration(estimate)}")
        verdict = ""
        if self.rto:
            verdict = " — within RTO" if estimate <= self.rto else " — EXCEEDS RTO"
            verdict = f" against RTO {format_duration(self.rto)}{verdict}"
        sources = ", ".join(f"{k}: {v}" for k, v in sorted((data.get("estimate_sources")
                                                            or {}).items()))
        over = bool(self.rto) and estimate > self.rto
        self.write(f"  Estimated time to recovery: {total}{verdict}"
                   + (f" (steps by source — {sources})" if sources else ""),
                   "bold red" if over else "bold")


RECAP_STYLES = {"completed": "bold green", "failed": "bold red", "aborted": "bold red",
                "paused": "bold yellow", "interrupted": "bold yellow"}


def _key(step: dict) -> str:
    return (step.get("id", "") + f"@{step.get('target', '')}" + f"#{step.get('item', '')}")


def _shortened(message: str) -> str:
    return message if len(message) <= MESSAGE_WIDTH else message[:MESSAGE_WIDTH - 1] + "…"


def _notified(data: dict) -> str:
    """Who a run-level notification is for and why: ``incidents (slack) on run.failed``."""
    via = f" ({data['via']})" if data.get("via") else ""
    return f"{data.get('target')}{via} on {data.get('event')}"
