"""Control-flow signals raised inside steps and handled by the executor.

They are not errors of the step: a pause waits for an operator or an approval
(exit 3), an abort is the operator's decision (exit 4), a rollback request
asks the executor to undo the completed steps.
"""
from __future__ import annotations

from enum import Enum


class Decision(str, Enum):
    """What the operator (or the answers file) decided before a step or after a failure."""

    RUN = "run"
    SKIP = "skip"
    RETRY = "retry"
    ABORT = "abort"
    ROLLBACK = "rollback"


class RunPaused(Exception):
    """The run waits for something outside it (an operator, an approval quorum)."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


class RunAborted(Exception):
    """The operator aborted the run."""

    def __init__(self, reason: str = "aborted by the operator") -> None:
        super().__init__(reason)
        self.reason = reason


class RollbackRequested(Exception):
    """Undo the completed steps (the operator pressed 'b', or on_failure: rollback)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ApprovalTimeout(Exception):
    """The approval window closed without a quorum (``on_timeout: fail``)."""
