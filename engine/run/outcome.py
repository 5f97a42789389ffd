"""How a run ended: a status (an enum that knows its journal event and exit code) and details."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from engine.errors import (EXIT_ABORTED, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PAUSED)
from engine.journal import events as ev


class RunStatus(str, Enum):
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PAUSED = "paused"
    ABORTED = "aborted"

    @property
    def event(self) -> str:
        """The journal event that records a run ending this way."""
        return _END_EVENTS[self]

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]


_END_EVENTS = {RunStatus.COMPLETED: ev.RUN_COMPLETED, RunStatus.FAILED: ev.RUN_FAILED,
               RunStatus.INTERRUPTED: ev.RUN_INTERRUPTED, RunStatus.PAUSED: ev.RUN_PAUSED,
               RunStatus.ABORTED: ev.RUN_ABORTED}
_EXIT_CODES = {RunStatus.COMPLETED: 0, RunStatus.FAILED: EXIT_FAILED,
               RunStatus.INTERRUPTED: EXIT_INTERRUPTED, RunStatus.PAUSED: EXIT_PAUSED,
               RunStatus.ABORTED: EXIT_ABORTED}


@dataclass(frozen=True)
class RunOutcome:
    status: RunStatus
    findings: list[dict] = field(default_factory=list)
    failed_step: str | None = None
    message: str = ""
    #: a ``--strict`` rehearsal: findings make it exit 1
    strict: bool = False

    @property
    def exit_code(self) -> int:
        if self.status is RunStatus.COMPLETED and self.strict and self.findings:
            return EXIT_FAILED
        return self.status.exit_code
