"""Defect 3: resume and approve verify the hash chain when they load a run and refuse a
tampered journal with exit 2 naming the first bad seq."""
from __future__ import annotations

import json
import time
from pathlib import Path

from helpers.run import runbook_cli, write_runbook

GATED = """
    name: Gated
    steps:
      - name: Gate
        id: gate
        command: [sh, -c, 'test -e go']
      - name: Act
        id: act
        command: [sh, -c, 'echo acted >> acted']
"""


def _journal(tmp_path: Path, run_id: str) -> Path:
    return tmp_path / "state" / "runs" / run_id / "journal.jsonl"


def test_resume_refuses_a_journal_whose_failed_gate_was_edited_to_succeeded(tmp_path):
    write_runbook(tmp_path, GATED)
    assert runbook_cli("run", "runbook.yaml", "--run-id", "r", "--state-dir", "state",
                       cwd=tmp_path).rc == 1
    path = _journal(tmp_path, "r")
    text = path.read_text()
    bad = next(json.loads(l)["seq"] for l in text.splitlines() if '"type":"step.failed"' in l)
    path.write_text(text.replace('"type":"step.failed"', '"type":"step.succeeded"'))
    before = path.read_bytes()
    done = runbook_cli("resume", "r", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 2, done.output
    assert f"seq {bad}" in done.stderr and "audit verify" in done.stderr
    assert not (tmp_path / "acted").exists()
    assert path.read_bytes() == before  # nothing appended


def test_approve_refuses_a_journal_with_a_forged_approval(tmp_path):
    write_runbook(tmp_path, """
        name: Two-person rule
        steps:
          - name: Sign off
            id: sign-off
            approve: {approvers: [carol, dave, erin], min_approvals: 2}
          - name: Act
            command: [sh, -c, 'echo acted >> acted']
    """)
    assert runbook_cli("run", "runbook.yaml", "--run-id", "a", "--state-dir", "state",
                       cwd=tmp_path).rc == 3
    path = _journal(tmp_path, "a")
    last = json.loads(path.read_text().splitlines()[-1])
    forged = {**last, "seq": last["seq"] + 1, "type": "approval.granted", "operator": "dave",
              "step": {"id": "sign-off", "path": "0", "name": "Sign off", "item": None},
              "data": {"comment": "forged"}, "prev": last["hash"], "hash": "0" * 64}
    with path.open("a") as handle:
        handle.write(json.dumps(forged, separators=(",", ":"), sort_keys=True) + "\n")
    done = runbook_cli("approve", "a", "sign-off", "--operator", "carol", "--state-dir", "state",
                       cwd=tmp_path)
    assert done.rc == 2, done.output
    assert f"seq {forged['seq']}" in done.stderr
    resumed = runbook_cli("resume", "a", "--state-dir", "state", cwd=tmp_path)
    assert resumed.rc == 2 and not (tmp_path / "acted").exists(), resumed.output


def test_verify_on_load_is_fast(tmp_path):
    from engine.journal.file import Journal, open_run

    directory = tmp_path / "state" / "runs" / "big"
    directory.mkdir(parents=True)
    journal = Journal(directory, "big", "t", "h")
    journal.sink._fsync = False
    for index in range(100_000):
        journal.append("step.succeeded", {"id": f"s{index}"}, {"value": {"ok": True}})
    journal.close()
    started = time.perf_counter()
    journal, lock = open_run(tmp_path / "state", "big", "t")
    elapsed = time.perf_counter() - started
    lock.release()
    journal.close()
    assert len(journal.events) == 100_000
    assert elapsed < 10, elapsed  # reading + verifying; ~1-2 s on a loaded 2-core machine
