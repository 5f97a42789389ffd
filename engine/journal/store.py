"""Where runs are kept: a local state directory (default) or a shared PostgreSQL table.

Every command that touches runs goes through a store, so the file and the
PostgreSQL backends keep exactly the same semantics: one journal per run,
the same hash chain, the same lock rule (one holder; a loser exits 5 and
writes nothing).
"""
from __future__ import annotations

import os
from pathlib import Path

from engine.errors import RunNotFound
from engine.journal.events import Event
from engine.journal.file import (JOURNAL_NAME, Journal, RunLock, Verification, create_run,
                            default_state_dir, open_run, read_events, run_dir, verify_file)


class FileStore:
    """Runs as ``STATE_DIR/runs/RUN_ID/journal.jsonl`` with an OS file lock."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    def __str__(self) -> str:
        return str(self.state_dir)

    def create_run(self, run_id: str, operator: str) -> tuple[Journal, RunLock]:
        return create_run(self.state_dir, run_id, operator)

    def open_run(self, run_id: str, operator: str) -> tuple[Journal, RunLock]:
        return open_run(self.state_dir, run_id, operator)

    def events(self, run_id: str) -> list[Event]:
        return read_events(self._journal_path(run_id)).events

    def verify(self, run_id: str) -> Verification:
        return verify_file(self._journal_path(run_id))

    def list_runs(self):
        from engine.journal.views import list_runs

        return list_runs(self.state_dir)

    def summary(self, run_id: str):
        from engine.journal.views import summarize

        self._journal_path(run_id)
        return summarize(run_dir(self.state_dir, run_id))

    def _journal_path(self, run_id: str) -> Path:
        path = run_dir(self.state_dir, run_id) / JOURNAL_NAME
        if not path.exists():
            raise RunNotFound(f"no run {run_id!r} in {self.state_dir} (see 'runbook runs')")
        return path


def open_store(state_dir: str | None = None, state_url: str | None = None):
    """``--state-url``/``RUNBOOK_STATE_URL`` selects PostgreSQL; otherwise the state directory."""
    url = state_url or os.environ.get("RUNBOOK_STATE_URL")
    if url:
        from engine.journal.postgres import PostgresStore

        return PostgresStore(url, default_state_dir(state_dir))
    return FileStore(default_state_dir(state_dir))
