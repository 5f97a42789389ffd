"""``runbook run``: validate everything, create the run's journal and execute it —
the API the CLI (and the tests) call."""
from __future__ import annotations

import os
import secrets as pysecrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from engine.guide.identity import operator_name
from engine.journal import events as ev
from engine.journal.replay import ReplayState
from engine.checksums import sha256_file
from engine.journal.store import open_store
from engine.run.estimates import step_history
from engine.run.lifecycle import execute_run, held_run
from engine.run.options import RunOptions
from engine.run.outcome import RunOutcome
from engine.run.prepare import Prepared, RunRequest, check_step_mode, input_sources, prepare
from engine.run.secret_inputs import recorded_extra_args, secret_names
from engine.secrets import MASK
from engine.source.model import Runbook


@dataclass
class RunHandle:
    run_id: str
    runbook: Runbook
    outcome: RunOutcome
    store: object
    options: RunOptions


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{pysecrets.token_hex(3)}"


def start_run(request: RunRequest, observers: list[Callable] = ()) -> RunHandle:
    """Validate everything, create the run's journal and execute it."""
    check_step_mode(request.options, request.answers)
    prepared = prepare(request)
    store = open_store(request.state_dir, request.state_url)
    run_id = request.run_id or new_run_id()
    operator = operator_name(request.operator)
    with held_run(lambda: store.create_run(run_id, operator), observers,
                  exits_after=request.exits_after, redactor=prepared.redactor) as held:
        started = _started_data(request, prepared)
        held.journal.append(ev.RUN_STARTED, None, prepared.redactor.mask(started))
        history = step_history(store, prepared.runbook.name) if request.options.dry_run else {}
        outcome = execute_run(prepared, held, request.options, ReplayState(), history)
    return RunHandle(run_id, prepared.runbook, outcome, store, request.options)


def _started_data(request: RunRequest, prepared: Prepared) -> dict:
    options, runbook = request.options, prepared.runbook
    inputs, extra = prepared.inputs, prepared.extra
    return {
        "runbook": {"path": str(Path(runbook.path).resolve()), "name": runbook.name,
                    "sha256": runbook.fingerprint, "source": Path(runbook.path).read_text()},
        "inventories": [str(Path(p).resolve()) for p in request.inventories],
        "includes": list(runbook.includes),
        "fingerprints": fingerprints([runbook.path, *runbook.includes, *request.inventories]),
        "inputs": _masked(runbook, inputs), "extra_vars": _masked(runbook, extra),
        "extra_args": recorded_extra_args(runbook, request.extra),
        "input_sources": input_sources(runbook, extra, prepared.inventory),
        "dry_run": options.dry_run, "strict": options.strict, "tags": sorted(options.tags),
        "skip_tags": sorted(options.skip_tags), "start_at": options.start_at,
        "on_failure": options.on_failure, "step_mode": options.step_mode, "limit": options.limit,
        "rto": runbook.rto, "rpo": runbook.rpo, "cwd": os.getcwd(),
        "steps": sum(1 for s in runbook.walk() if s.action), "drill": request.drill,
    }


def _masked(runbook: Runbook, values: dict) -> dict:
    """Secret inputs by name, whatever their length (the redactor masks short ones only whole)."""
    secret = secret_names(runbook)
    return {k: MASK if k in secret else v for k, v in values.items()}


def fingerprints(paths) -> dict[str, str]:
    """SHA-256 of each file's bytes, by absolute path."""
    return {str(Path(p).resolve()): sha256_file(p) for p in paths}


__all__ = ["RunRequest", "RunHandle", "start_run", "new_run_id", "fingerprints"]
