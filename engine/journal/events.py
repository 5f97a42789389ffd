"""Events: the only thing reporters and the journal see of a run.

An event is appended to the journal (which gives it ``seq``, ``prev`` and
``hash``) and then handed to every observer. Data is already redacted when an
event is built: nothing downstream has to remember to mask secrets.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from engine.checksums import sha256_bytes
from engine.jsonvalues import json_safe

RUN_STARTED = "run.started"
RUN_RESUMED = "run.resumed"
RUN_COMPLETED = "run.completed"
RUN_FAILED = "run.failed"
RUN_ABORTED = "run.aborted"
RUN_INTERRUPTED = "run.interrupted"
RUN_PAUSED = "run.paused"
STEP_STARTED = "step.started"
STEP_SUCCEEDED = "step.succeeded"
STEP_FAILED = "step.failed"
STEP_SKIPPED = "step.skipped"
STEP_PLANNED = "step.planned"
STEP_RETRY = "step.retry"
STEP_RESCUED = "step.rescued"
VERIFY_PASSED = "verify.passed"
VERIFY_FAILED = "verify.failed"
JOURNAL_REPAIRED = "journal.repaired"
STEP_PAUSED = "step.paused"
OPERATOR_CONFIRMED = "operator.confirmed"
OPERATOR_SKIPPED = "operator.skipped"
OPERATOR_NOTE = "operator.note"
OPERATOR_DECIDED = "operator.decided"
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_GRANTED = "approval.granted"
ROLLBACK_STARTED = "rollback.started"
ROLLBACK_COMPLETED = "rollback.completed"
NOTIFICATION_SENT = "notification.sent"
NOTIFICATION_FAILED = "notification.failed"
NOTIFICATION_PLANNED = "notification.planned"

#: events that end a step (one per step.started)
STEP_ENDS = frozenset({STEP_SUCCEEDED, STEP_FAILED, STEP_SKIPPED, STEP_PLANNED, "step.paused"})
#: events that end a run (the run may still be resumed after failed/aborted/interrupted/paused)
RUN_ENDS = frozenset({RUN_COMPLETED, RUN_FAILED, RUN_ABORTED, RUN_INTERRUPTED, RUN_PAUSED})
#: events that record what happened because of another event (a notification about the
#: run's end) and never change a run's state: they may follow the event that ends a run
AFTERWORDS = frozenset({NOTIFICATION_SENT, NOTIFICATION_FAILED, NOTIFICATION_PLANNED})


@dataclass(frozen=True)
class Event:
    seq: int
    ts: str
    run_id: str
    type: str
    step: dict | None
    operator: str
    host: str
    data: dict
    prev: str
    hash: str = ""

    def body(self) -> dict:
        """The event as a dict without ``hash`` (what the hash covers)."""
        body = asdict(self)
        del body["hash"]
        return body

    @property
    def step_id(self) -> str | None:
        return self.step.get("id") if self.step else None


def canonical(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=json_safe).encode("utf-8")


def event_hash(body: dict) -> str:
    return sha256_bytes(canonical(body))
