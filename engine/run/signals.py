"""Ctrl-C, SIGTERM and SIGHUP during a run.

The first signal becomes a ``KeyboardInterrupt`` in the main thread, except
while the main thread is inside a critical section (a journal append): then it
is delivered when the section ends, so an event is never half-recorded in
memory. A second signal exits at once with 130.
"""
from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

EXIT_INTERRUPTED = 130
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class InterruptGuard:
    def __init__(self) -> None:
        self.depth = 0
        self.pending = False
        self.received = 0
        self._previous: dict = {}

    def install(self) -> "InterruptGuard":
        if threading.current_thread() is threading.main_thread():
            for sig in HANDLED:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def finish(self, keep_handlers: bool) -> None:
        """The run is over. A CLI about to exit keeps the handlers, which now ignore
        signals: a Ctrl-C in the last milliseconds cannot turn a finished run's exit
        code into a signal death. Library callers get their old handlers back."""
        self.finished = True
        if not keep_handlers:
            self.uninstall()
        elif threading.current_thread() is threading.main_thread():
            # SIG_IGN rather than a Python handler: interpreter shutdown resets
            # Python handlers to the default, which would kill the process.
            for sig in HANDLED:
                signal.signal(sig, signal.SIG_IGN)

    finished = False

    def _handle(self, signum, frame) -> None:
        if self.finished:
            return
        self.received += 1
        if self.received > 1:
            os._exit(EXIT_INTERRUPTED)
        if self.depth:
            self.pending = True
            return
        raise KeyboardInterrupt

    def hold(self) -> None:
        """Defer signals until ``release()`` (e.g. while a run's journal is being created)."""
        self.depth += 1

    def release(self) -> None:
        """End a ``hold()``; a signal that arrived meanwhile is raised now."""
        self.depth -= 1
        if self.pending and self.depth == 0:
            self.pending = False
            raise KeyboardInterrupt

    @contextmanager
    def critical(self):
        """No ``KeyboardInterrupt`` inside; a signal that arrives is raised on exit."""
        main = threading.current_thread() is threading.main_thread()
        if main:
            self.depth += 1
        try:
            yield
        finally:
            if main:
                self.depth -= 1
                if self.pending and self.depth == 0:
                    self.pending = False
                    raise KeyboardInterrupt
