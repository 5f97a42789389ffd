"""``runbook resume``: continue a failed, aborted, interrupted or crashed run.

The run's state comes only from replaying its journal: completed steps are
not run again (their registered values and facts are restored), a step that
started and never ended is *in doubt* and is re-run only when that is safe or
the operator says so.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.journal import events as ev
from engine.errors import EXIT_PAUSED, EngineError, UsageError
from engine.guide.identity import operator_name
from engine.run.estimates import step_history
from engine.run.lifecycle import execute_run, held_run
from engine.run.options import RunOptions
from engine.run.prepare import RunRequest, check_step_mode, parse_extra_vars, prepare
from engine.run.secret_inputs import Resupplied
from engine.journal.store import open_store
from engine.source.model import Runbook
from engine.journal.replay import ReplayState, replay, step_id_of
from engine.run.start import RunHandle, fingerprints


class NothingToResume(EngineError):
    exit_code = 0

    def render(self) -> str:
        return str(self)


class InDoubt(EngineError):
    """A non-idempotent step may or may not have run, and nobody decided what to do."""

    exit_code = EXIT_PAUSED


class RunbookChanged(EngineError):
    exit_code = 2


@dataclass(frozen=True)
class ResumeRequest:
    run_id: str
    state_dir: str | None = None
    state_url: str | None = None
    operator: str | None = None
    in_doubt: str | None = None  # "rerun" | "skip" | None (ask, or stop)
    allow_changed: bool = False
    step_mode: bool = False
    answers: str | None = None
    on_failure: str | None = None
    limit: str | None = None  # --limit; None: the run's own
    exits_after: bool = False  # the CLI: keep ignoring signals once the run is over
    #: secret inputs given again (-e NAME=V on resume; else RUNBOOK_SECRET_<NAME>)
    secret_inputs: tuple[str, ...] = ()


def resume_run(request: ResumeRequest, observers: list[Callable] = (),
               ask: Callable[[str, str], str] | None = None) -> RunHandle:
    """Resume a run. ``ask(step_label, key)`` returns "rerun"/"skip" on a terminal, or is None."""
    store = open_store(request.state_dir, request.state_url)
    operator = operator_name(request.operator)
    with held_run(lambda: store.open_run(request.run_id, operator), observers,
                  exits_after=request.exits_after) as held:
        journal = held.journal
        started = _run_started(journal.events, request.run_id)
        _refuse_finished(journal.events, request.run_id)
        changes = _changes(started.data)
        if changes and not request.allow_changed:
            raise RunbookChanged(_changed_message(request.run_id, changes, started.data))
        run_request = _original_request(started.data, request, trusted=not changes)
        check_step_mode(run_request.options, request.answers)
        prepared = prepare(run_request)
        state = replay(journal.events)
        decisions = _decide_in_doubt(prepared.runbook, state, request, ask)
        journal.append(ev.RUN_RESUMED, None, prepared.redactor.mask({
            "runbook": started.data.get("runbook", {}) | {"source": None},
            "rto": started.data.get("rto"), "dry_run": run_request.options.dry_run,
            "allow_changed": bool(changes), "changes": [c for c, _ in changes],
            "in_doubt": decisions, "completed_steps": len(state.completed),
            "run_started": journal.events[0].ts}))
        _record_skips(journal, state, decisions)
        history = (step_history(store, prepared.runbook.name)
                   if run_request.options.dry_run else {})
        outcome = execute_run(prepared, held, run_request.options, state, history)
    return RunHandle(request.run_id, prepared.runbook, outcome, store, run_request.options)


def _run_started(events, run_id: str):
    for event in events:
        if event.type == ev.RUN_STARTED:
            return event
    raise UsageError(f"run {run_id} has no run.started event: nothing to resume")


def _refuse_finished(events, run_id: str) -> None:
    ends = [e.type for e in events if e.type in ev.RUN_ENDS or e.type == ev.ROLLBACK_COMPLETED]
    if ev.ROLLBACK_COMPLETED in ends:
        raise NothingToResume(f"run {run_id} was rolled back: nothing to resume")
    if ends and ends[-1] == ev.RUN_COMPLETED:
        raise NothingToResume(f"run {run_id} already completed: nothing to resume")


def _original_request(data: dict, request: ResumeRequest, trusted: bool) -> RunRequest:
    """The run's own request; ``trusted``: no file changed, so re-validation can be skipped."""
    options = RunOptions(dry_run=bool(data.get("dry_run")), strict=bool(data.get("strict")),
                         tags=frozenset(data.get("tags") or ()),
                         skip_tags=frozenset(data.get("skip_tags") or ()),
                         start_at=data.get("start_at"), step_mode=request.step_mode,
                         on_failure=request.on_failure or data.get("on_failure"),
                         limit=request.limit or data.get("limit"))
    return RunRequest(runbook=data["runbook"]["path"], inventories=list(data.get("inventories", [])),
                      extra=list(data.get("extra_args", [])), options=options,
                      run_id=request.run_id, state_dir=request.state_dir,
                      operator=request.operator, answers=request.answers,
                      state_url=request.state_url,
                      trusted_sha256=data["runbook"].get("sha256") if trusted else None,
                      resupplied=Resupplied(parse_extra_vars(list(request.secret_inputs))))


# --- changed files ---

def _changes(data: dict) -> list[tuple[str, str]]:
    """(path, what) for each file whose bytes differ from when the run started."""
    recorded = data.get("fingerprints") or {}
    changes = []
    for path, digest in recorded.items():
        if not Path(path).exists():
            changes.append((path, "deleted"))
            continue
        if fingerprints([path])[path] != digest:
            changes.append((path, "modified"))
    return changes


def _changed_message(run_id: str, changes, data: dict) -> str:
    lines = [f"run {run_id}: files changed since the run started:"]
    for path, what in changes:
        lines.append(f"  {what}: {path}")
    runbook = data.get("runbook", {})
    source, path = runbook.get("source"), runbook.get("path")
    if source is not None and path and Path(path).exists():
        diff = list(difflib.unified_diff(source.splitlines(), Path(path).read_text().splitlines(),
                                         "at start", "now", n=0, lineterm=""))
        if diff:
            added = sum(1 for d in diff if d.startswith("+") and not d.startswith("+++"))
            removed = sum(1 for d in diff if d.startswith("-") and not d.startswith("---"))
            lines.append(f"  runbook diff: +{added} -{removed} lines")
            lines += ["    " + d for d in diff[2:22]]
            if len(diff) > 22:
                lines.append(f"    ... {len(diff) - 22} more diff lines")
    lines.append("resume anyway with --allow-changed (recorded in the journal)")
    return "\n".join(lines)


# --- in-doubt steps ---

def _decide_in_doubt(runbook: Runbook, state: ReplayState, request: ResumeRequest,
                     ask) -> list[dict]:
    from engine import actions

    steps = {s.id: s for s in runbook.walk()}
    decisions = []
    for key in list(state.in_doubt):
        step = steps.get(step_id_of(key))
        if step is None or not step.action:
            continue
        cls = actions.get_action(step.action)
        mutates = cls.mutates_for(step.args) if step.mutates is None else step.mutates
        if not mutates or step.idempotent or getattr(cls, "idempotent", False):
            decision, why = "rerun", "read-only" if not mutates else (
                "idempotent" if step.idempotent else f"idempotent ({step.action})")
        elif request.in_doubt:
            decision, why = request.in_doubt, f"--in-doubt {request.in_doubt}"
        elif ask is not None:
            decision, why = ask(step.label, key), "operator answered"
        else:
            raise InDoubt(f"step '{step.label}' ({key}) started but never finished: it may or may "
                          f"not have run. Check its effect, then resume with "
                          f"--in-doubt rerun (run it again) or --in-doubt skip (treat it as done).")
        decisions.append({"step": key, "decision": decision, "why": why})
    return decisions


def _record_skips(journal, state: ReplayState, decisions: list[dict]) -> None:
    for decision in decisions:
        if decision["decision"] != "skip":
            continue
        started = state.in_doubt[decision["step"]]
        data = {"reason": "in doubt; skipped by the operator", "in_doubt": True,
                "value": {"ok": True, "changed": False, "failed": False, "skipped": True,
                          "elapsed": 0.0, "message": "in doubt, skipped"}}
        event = journal.append(ev.STEP_SKIPPED, started.step, data)
        state.completed[decision["step"]] = event.data
        del state.in_doubt[decision["step"]]


__all__ = ["ResumeRequest", "resume_run", "InDoubt", "NothingToResume", "RunbookChanged"]
