"""Real runs for the report tests, made through the CLI: a completed run with an approval,
a retry, an ignored failure and a manual checklist with evidence and a note; a failed run
that rolls back; a run killed mid-step and resumed; a dry-run."""
from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from helpers.run import runbook_cli, start_cli, write_runbook

RECOVERY = """\
name: Database recovery
rto: 1m
rpo: 15m
steps:
  - name: Check backup
    id: check
    command: [echo, ok]
    register: out
    verify:
      - that: out.stdout == 'ok'
    expected_duration: 2s
  - name: Stop writers
    id: stop
    command: [sh, -c, "sleep 1.2; echo stopped"]
    rollback:
      - command: [echo, writers back]
  - name: Sign-off
    id: sign-off
    approve: {approvers: [carol, dave], min_approvals: 1}
  - name: Flaky health
    id: health
    command: [sh, -c, "test -f done.flag || (touch done.flag; exit 1)"]
    retries: 2
    delay: 1
  - name: Optional cleanup
    id: cleanup
    command: [sh, -c, "exit 4"]
    ignore_errors: true
  - name: Announce
    id: announce
    manual:
      instructions: Post on the status page.
      checklist: [Status page updated, Slack posted]
      evidence: required
"""

ANSWERS = "announce: {checklist: all, evidence: INC-4242, note: posted at 03:12}\n"

FAILOVER = """\
name: Failover
rto: 30s
steps:
  - name: Scale down
    id: down
    command: [echo, scaled]
    rollback:
      - command: [echo, scale back up]
  - name: Promote
    id: promote
    command: [sh, -c, "echo promotion refused >&2; exit 2"]
"""

CRASHY = """\
name: Crashy
rto: 1m
steps:
  - name: First
    id: first
    command: [echo, one]
  - name: Slow
    id: slow
    command: [sh, -c, "sleep 30"]
    idempotent: true
  - name: Last
    id: last
    command: [echo, three]
"""


def cli(tmp: Path, *args, **kw):
    return runbook_cli(*args, "--state-dir", "state", cwd=tmp, **kw)


def completed_run(tmp: Path, run_id: str = "rec") -> str:
    write_runbook(tmp, RECOVERY, "recovery.yaml")
    (tmp / "answers.yaml").write_text(ANSWERS)
    first = cli(tmp, "run", "recovery.yaml", "--run-id", run_id, "--operator", "alice",
                "--answers", "answers.yaml")
    assert first.rc == 3, first.output
    approved = cli(tmp, "approve", run_id, "sign-off", "--operator", "carol",
                   "--comment", "backup verified")
    assert approved.rc == 0, approved.output
    resumed = cli(tmp, "resume", run_id, "--operator", "bob", "--answers", "answers.yaml")
    assert resumed.rc == 0, resumed.output
    return run_id


def failed_run(tmp: Path, run_id: str = "fail") -> str:
    write_runbook(tmp, FAILOVER, "failover.yaml")
    done = cli(tmp, "run", "failover.yaml", "--run-id", run_id, "--operator", "alice",
               "--on-failure", "rollback")
    assert done.rc == 1, done.output
    return run_id


def crashed_and_resumed_run(tmp: Path, run_id: str = "crash") -> str:
    write_runbook(tmp, CRASHY, "crashy.yaml")
    proc = start_cli("run", "crashy.yaml", "--run-id", run_id, "--operator", "alice",
                     "--state-dir", "state", cwd=tmp)
    journal = tmp / "state" / "runs" / run_id / "journal.jsonl"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if journal.exists() and '"id": "slow"' in journal.read_text().replace('":"', '": "'):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)  # a crash: no end event
    proc.wait(10)
    write_runbook(tmp, CRASHY.replace("sleep 30", "sleep 0.2"), "crashy.yaml")
    resumed = cli(tmp, "resume", run_id, "--operator", "bob", "--in-doubt", "rerun",
                  "--allow-changed")
    assert resumed.rc == 0, resumed.output
    return run_id


def dry_run(tmp: Path, run_id: str = "dry") -> str:
    write_runbook(tmp, RECOVERY, "recovery.yaml")
    done = cli(tmp, "run", "recovery.yaml", "--run-id", run_id, "--dry-run", "--operator", "alice")
    assert done.rc == 0, done.output
    return run_id


def report(tmp: Path, run_id: str, fmt: str) -> str:
    done = cli(tmp, "report", run_id, "--format", fmt)
    assert done.rc == 0, done.output
    return done.stdout


_NORMALISE = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<TS>"),
    (re.compile(r"\b\d{4}-\d\d-\d\d\b"), "<DATE>"),
    (re.compile(r"\b\d\d:\d\d:\d\d\b"), "<HH:MM:SS>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<HASH>"),
    (re.compile(r"\b[0-9a-f]{16}…"), "<HASH>…"),
    (re.compile(r"\b(\d+h)?(\d+m)?\d+(\.\d)?s\b"), "<DUR>"),
    (re.compile(r'time="[0-9.]+"'), 'time="<N>"'),
]


def normalise(text: str, tmp: Path) -> str:
    text = text.replace(str(tmp), "<TMP>")
    for pattern, replacement in _NORMALISE:
        text = pattern.sub(replacement, text)
    return text
