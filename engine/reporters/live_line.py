"""The "still running" line of the console: which step runs, for how long, retries so far,
and the RTO clock — so a 30 s step does not leave the screen frozen on its header.

On a terminal: rich's live display, redrawn in place, gone when the step ends.
Elsewhere (a pipe, a log file): one plain line every ``PLAIN_EVERY`` seconds at most, so
a pipe gets a heartbeat and not a flood.
"""
from __future__ import annotations

import threading
import time

from engine.durations import format_duration

SHOW_AFTER = 1.0      # a step shorter than this never gets a live line
PLAIN_EVERY = 10.0    # seconds between two plain "still running" lines
TICK = 0.25


class LiveLine:
    def __init__(self, reporter) -> None:
        self.reporter = reporter
        self.running: dict[str, dict] = {}   # key -> {label, since, retries}
        self.lock = reporter.lock
        self._live = None
        self._last_plain = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- called by the reporter (under its lock) ---
    def started(self, key: str, label: str) -> None:
        self.running[key] = {"label": label, "since": time.monotonic(), "retries": 0}
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="live-line", daemon=True)
            self._thread.start()

    def retried(self, key: str) -> None:
        if key in self.running:
            self.running[key]["retries"] += 1

    def ended(self, key: str) -> None:
        """Before the step's own line is printed: take the live line away."""
        self.running.pop(key, None)
        if not self.running:
            self._hide()

    def close(self) -> None:
        self._stop.set()
        self.running.clear()
        self._hide()

    # --- the ticker thread ---
    def _loop(self) -> None:
        while not self._stop.wait(TICK):
            with self.lock:
                if self._stop.is_set() or self.reporter.closed:
                    return
                try:
                    self._tick()
                except (BrokenPipeError, ValueError, OSError):
                    self.reporter.closed = True
                    return

    def _tick(self) -> None:
        now = time.monotonic()
        shown = [s for s in self.running.values() if now - s["since"] >= SHOW_AFTER]
        if not shown:
            return
        if self.reporter.color:
            self._show_live(shown, now)
        elif now - self._last_plain >= PLAIN_EVERY and \
                any(now - s["since"] >= PLAIN_EVERY for s in shown):
            self._last_plain = now
            self.reporter._line("running", self.text(shown, now), self.reporter._clock())

    def text(self, shown: list[dict], now: float) -> str:
        first = shown[0]
        retries = first["retries"]
        text = (f"{first['label']} — {format_duration(now - first['since'])} so far"
                + (f", {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""))
        if len(shown) > 1:
            text += f" (and {len(shown) - 1} more running)"
        return text

    def _show_live(self, shown: list[dict], now: float) -> None:
        from rich.live import Live
        from rich.text import Text

        line = Text.assemble(("running      ", "bold blue"), self.text(shown, now), " ",
                             self.reporter.clock_text())
        if self._live is None:
            self._live = Live(line, console=self.reporter._console, transient=True,
                              auto_refresh=False, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()
        self._live.update(line, refresh=True)

    def _hide(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()
