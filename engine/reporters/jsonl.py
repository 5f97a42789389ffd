"""``--output json``: one JSON event per line on stdout."""
from __future__ import annotations

import json
import sys
from dataclasses import asdict

from engine.journal.events import Event


class JsonLinesReporter:
    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.closed = False

    def __call__(self, event: Event) -> None:
        if self.closed:
            return
        try:
            self.stream.write(json.dumps(asdict(event), ensure_ascii=False, default=str) + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            # The reader went away (``| head``): the run goes on, the journal keeps everything.
            self.closed = True
