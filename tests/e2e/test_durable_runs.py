"""Durable runs: resume after crashes and Ctrl-C, tamper evidence, locking, changed runbooks.

Everything here drives the real ``runbook`` command in subprocesses and
inspects the real journal files.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ENGINE = [sys.executable, "-m", "engine"]
STEPS = 30


def runbook_cmd(*args: str, cwd: Path, timeout: float = 60, env: dict | None = None):
    return subprocess.run(ENGINE + list(args), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def journal_events(state: Path, run_id: str) -> list[dict]:
    path = state / "runs" / run_id / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_appending_runbook(directory: Path, steps: int = STEPS, pause: float = 0.02) -> Path:
    lines = ["name: Append lines", "steps:"]
    for n in range(1, steps + 1):
        lines += [f"  - name: step {n}",
                  f"    command: [sh, -c, 'echo step-{n} >> out.txt; sleep {pause}']"]
    path = directory / "append.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_until_started(state: Path, run_id: str, within: float = 60) -> None:
    """Until the run's first step is durably started (a loaded machine is slow to get there)."""
    path = state / "runs" / run_id / "journal.jsonl"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and '"type":"step.started"' in path.read_text():
            return
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} never started a step")


def in_doubt_skipped(events: list[dict]) -> set[str]:
    return {e["step"]["name"] for e in events
            if e["type"] == "step.skipped" and e["data"].get("in_doubt")}


def start_run(tmp_path: Path, runbook: Path, run_id: str) -> subprocess.Popen:
    return subprocess.Popen(ENGINE + ["run", str(runbook), "--state-dir", "state",
                                      "--run-id", run_id],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_at_random(process: subprocess.Popen, rng: random.Random, sig: int,
                   journal: Path | None = None) -> None:
    """Send ``sig`` at a random moment after the run's journal exists (or after start-up)."""
    deadline = time.monotonic() + 15
    while journal is not None and not journal.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.9) if journal is not None else rng.uniform(0.25, 1.2))
    if process.poll() is None:
        process.send_signal(sig)
    process.wait(timeout=30)


def resume_until_done(tmp_path: Path, run_id: str, rng: random.Random, sig: int) -> None:
    """Resume with --in-doubt skip, sometimes killing the resume too, until the run completes."""
    for attempt in range(20):
        args = ENGINE + ["resume", run_id, "--state-dir", "state", "--in-doubt", "skip"]
        process = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        if attempt < 2 and rng.random() < 0.5:
            kill_at_random(process, rng, sig)
        rc = process.wait(timeout=60)
        if rc == 0 and not (process.stderr and "held" in process.stderr.read()):
            status = runbook_cmd("runs", "--state-dir", "state", "--output", "json", cwd=tmp_path)
            runs = [json.loads(line) for line in status.stdout.splitlines()]
            if runs and runs[0]["status"] == "completed":
                return
    pytest.fail(f"run {run_id} did not complete after 20 resumes")


def assert_each_step_once(tmp_path: Path, run_id: str) -> None:
    events = journal_events(tmp_path / "state", run_id)
    lines = Counter((tmp_path / "out.txt").read_text().split()) if (tmp_path / "out.txt").exists() else Counter()
    doubtful = {name.replace("step ", "step-") for name in in_doubt_skipped(events)}
    duplicated = [line for line, count in lines.items() if count > 1]
    assert not duplicated, f"steps ran twice: {duplicated}"
    for n in range(1, STEPS + 1):
        line = f"step-{n}"
        if line not in doubtful:
            assert lines[line] == 1, f"{line} ran {lines[line]} times and was not in doubt"
    verify = runbook_cmd("audit", "verify", run_id, "--state-dir", "state", cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("ok: ")


@pytest.mark.parametrize("seed", range(20))
def test_sigkill_at_random_moments_never_runs_a_step_twice(tmp_path, seed):
    rng = random.Random(seed)
    runbook = write_appending_runbook(tmp_path)
    run_id = f"kill-{seed}"
    journal = tmp_path / "state" / "runs" / run_id / "journal.jsonl"
    kill_at_random(start_run(tmp_path, runbook, run_id), rng, signal.SIGKILL, journal)
    resume_until_done(tmp_path, run_id, rng, signal.SIGKILL)
    time.sleep(0.1)  # an orphaned step process from the kill may still be appending
    assert_each_step_once(tmp_path, run_id)


@pytest.mark.parametrize("seed", range(20))
def test_sigint_at_random_moments_is_resumable_without_duplicates(tmp_path, seed):
    rng = random.Random(1000 + seed)
    runbook = write_appending_runbook(tmp_path)
    run_id = f"int-{seed}"
    process = start_run(tmp_path, runbook, run_id)
    kill_at_random(process, rng, signal.SIGINT, tmp_path / "state" / "runs" / run_id / "journal.jsonl")
    events = journal_events(tmp_path / "state", run_id)
    if process.returncode == 130:
        assert events[-1]["type"] == "run.interrupted"
    else:
        assert process.returncode == 0 and events[-1]["type"] == "run.completed"
    resume_until_done(tmp_path, run_id, rng, signal.SIGINT)
    assert_each_step_once(tmp_path, run_id)


def test_interrupt_stops_the_running_step_process_tree(tmp_path):
    (tmp_path / "rb.yaml").write_text(
        "name: Long\nsteps:\n  - name: sleeper\n"
        "    shell: 'sleep 30 & echo $! > child.pid; sleep 30'\n")
    process = subprocess.Popen(ENGINE + ["run", "rb.yaml", "--state-dir", "state", "--run-id", "r"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not (tmp_path / "child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 130
    child = int((tmp_path / "child.pid").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    events = journal_events(tmp_path / "state", "r")
    assert events[-1]["type"] == "run.interrupted"
    assert [e["type"] for e in events].count("step.started") == 1


def test_resume_restores_registered_values_and_facts(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Registered values survive
steps:
  - name: produce
    command: [echo, first-output]
    register: produced
  - name: remember
    set_fact: {remembered: 41}
  - name: gate
    command: [test, -f, go]
  - name: consume
    command: [sh, -c, 'echo "{{ produced.stdout }} {{ remembered + 1 }}" > result.txt']
""")
    first = runbook_cmd("run", "rb.yaml", "--state-dir", "state", "--run-id", "r1", cwd=tmp_path)
    assert first.returncode == 1
    (tmp_path / "go").touch()
    second = runbook_cmd("resume", "r1", "--state-dir", "state", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (tmp_path / "result.txt").read_text().strip() == "first-output 42"
    types = [(e["type"], (e["step"] or {}).get("id")) for e in journal_events(tmp_path / "state", "r1")]
    assert types.count(("step.started", "produce")) == 1
    assert types.count(("step.started", "gate")) == 2


def test_resume_continues_a_loop_at_the_unfinished_item(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Loop resume
steps:
  - name: items
    command: [sh, -c, 'if [ "{{ item }}" = 3 ] && [ ! -f go ]; then exit 1; fi; echo {{ item }} >> out.txt']
    loop: [1, 2, 3, 4]
""")
    assert runbook_cmd("run", "rb.yaml", "--state-dir", "state", "--run-id", "r", cwd=tmp_path).returncode == 1
    (tmp_path / "go").touch()
    assert runbook_cmd("resume", "r", "--state-dir", "state", cwd=tmp_path).returncode == 0
    assert (tmp_path / "out.txt").read_text().split() == ["1", "2", "3", "4"]


def test_resume_of_a_rescued_block_does_not_rerun_the_rest_of_the_block(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Rescue resume
steps:
  - block:
      - name: breaks
        command: ["false"]
      - name: never
        command: [sh, -c, 'echo never >> out.txt']
    rescue:
      - name: fix
        command: [sh, -c, 'echo fix >> out.txt']
  - name: gate
    command: [test, -f, go]
  - name: after
    command: [sh, -c, 'echo after >> out.txt']
""")
    assert runbook_cmd("run", "rb.yaml", "--state-dir", "state", "--run-id", "r", cwd=tmp_path).returncode == 1
    (tmp_path / "go").touch()
    assert runbook_cmd("resume", "r", "--state-dir", "state", cwd=tmp_path).returncode == 0
    assert (tmp_path / "out.txt").read_text().split() == ["fix", "after"]


def test_in_doubt_mutating_step_stops_a_noninteractive_resume_with_exit_3(tmp_path):
    rb = write_appending_runbook(tmp_path, steps=3, pause=5)
    process = start_run(tmp_path, rb, "r")
    wait_until_started(tmp_path / "state", "r")
    process.kill()
    process.wait()
    result = runbook_cmd("resume", "r", "--state-dir", "state", cwd=tmp_path)
    assert result.returncode == 3
    assert "--in-doubt rerun" in result.stderr and "--in-doubt skip" in result.stderr
    assert "step 1" in result.stderr
    before = len(journal_events(tmp_path / "state", "r"))
    assert before == len(journal_events(tmp_path / "state", "r"))


def test_in_doubt_read_only_step_is_rerun_automatically(tmp_path):
    (tmp_path / "rb.yaml").write_text(
        "name: Read-only\nsteps:\n  - name: probe\n    command: [sleep, '5']\n    mutates: false\n"
        "  - name: after\n    command: [touch, done.txt]\n")
    process = subprocess.Popen(ENGINE + ["run", "rb.yaml", "--state-dir", "state", "--run-id", "r"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_started(tmp_path / "state", "r")
    process.kill()
    process.wait()
    (tmp_path / "rb.yaml").write_text((tmp_path / "rb.yaml").read_text())  # unchanged bytes
    result = runbook_cmd("resume", "r", "--state-dir", "state", cwd=tmp_path, timeout=30)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "done.txt").exists()
    resumed = [e for e in journal_events(tmp_path / "state", "r") if e["type"] == "run.resumed"]
    assert resumed[0]["data"]["in_doubt"] == [{"step": "probe", "decision": "rerun", "why": "read-only"}]


# --- tamper evidence ---

def completed_run(tmp_path: Path) -> Path:
    rb = write_appending_runbook(tmp_path, steps=5, pause=0)
    assert runbook_cmd("run", str(rb), "--state-dir", "state", "--run-id", "t", cwd=tmp_path).returncode == 0
    return tmp_path / "state" / "runs" / "t" / "journal.jsonl"


def verify(tmp_path: Path):
    return runbook_cmd("audit", "verify", "t", "--state-dir", "state", cwd=tmp_path)


def test_audit_verify_accepts_an_untouched_journal(tmp_path):
    journal = completed_run(tmp_path)
    result = verify(tmp_path)
    count = len(journal.read_text().splitlines())
    assert result.returncode == 0
    assert result.stdout.startswith(f"ok: {count} events, head ")


def test_audit_verify_names_the_edited_event(tmp_path):
    journal = completed_run(tmp_path)
    lines = journal.read_text().splitlines()
    lines[4] = lines[4].replace('"step 2"', '"step X"') if '"step 2"' in lines[4] else lines[4].replace(
        '"root"', '"mallory"', 1)
    event = json.loads(lines[4])
    event["operator"] = "mallory"
    lines[4] = json.dumps(event)
    journal.write_text("\n".join(lines) + "\n")
    result = verify(tmp_path)
    assert result.returncode == 1
    assert "first bad event seq 5" in result.stdout and "edited" in result.stdout


def test_audit_verify_names_a_deleted_event(tmp_path):
    journal = completed_run(tmp_path)
    lines = journal.read_text().splitlines()
    del lines[3]
    journal.write_text("\n".join(lines) + "\n")
    result = verify(tmp_path)
    assert result.returncode == 1 and "first bad event seq 4" in result.stdout


def test_audit_verify_names_an_inserted_event(tmp_path):
    journal = completed_run(tmp_path)
    lines = journal.read_text().splitlines()
    lines.insert(6, lines[5])
    journal.write_text("\n".join(lines) + "\n")
    result = verify(tmp_path)
    assert result.returncode == 1 and "first bad event seq 7" in result.stdout


def test_audit_verify_names_reordered_events(tmp_path):
    journal = completed_run(tmp_path)
    lines = journal.read_text().splitlines()
    lines[2], lines[3] = lines[3], lines[2]
    journal.write_text("\n".join(lines) + "\n")
    result = verify(tmp_path)
    assert result.returncode == 1 and "first bad event seq 3" in result.stdout


def test_rehashed_edit_is_still_caught_by_the_chain(tmp_path):
    """An attacker who recomputes the edited event's own hash still breaks the next link."""
    from engine.journal.events import event_hash

    journal = completed_run(tmp_path)
    lines = journal.read_text().splitlines()
    event = json.loads(lines[2])
    event["operator"] = "mallory"
    del event["hash"]
    event["hash"] = event_hash(event)
    lines[2] = json.dumps(event)
    journal.write_text("\n".join(lines) + "\n")
    result = verify(tmp_path)
    assert result.returncode == 1 and "first bad event seq 4" in result.stdout


def test_torn_tail_is_reported_apart_from_tampering_and_repaired_by_resume(tmp_path):
    rb = tmp_path / "rb.yaml"
    rb.write_text("name: Torn\nsteps:\n  - name: a\n    command: ['true']\n"
                  "  - name: gate\n    command: [test, -f, go]\n")
    assert runbook_cmd("run", "rb.yaml", "--state-dir", "state", "--run-id", "t", cwd=tmp_path).returncode == 1
    journal = tmp_path / "state" / "runs" / "t" / "journal.jsonl"
    with open(journal, "ab") as handle:
        handle.write(b'{"seq": 99, "ts": "2026-')  # a crash in the middle of a write
    result = verify(tmp_path)
    assert result.returncode == 0
    assert "torn" in result.stdout
    (tmp_path / "go").touch()
    resumed = runbook_cmd("resume", "t", "--state-dir", "state", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    types = [e["type"] for e in journal_events(tmp_path / "state", "t")]
    assert "journal.repaired" in types
    after = verify(tmp_path)
    assert after.returncode == 0 and "torn" not in after.stdout


# --- locking ---

def test_second_resume_of_a_held_run_exits_5_and_writes_nothing(tmp_path):
    (tmp_path / "rb.yaml").write_text(
        "name: Slow\nsteps:\n  - name: gate\n    command: [test, -f, go]\n"
        "  - name: slow\n    command: [sleep, '3']\n")
    assert runbook_cmd("run", "rb.yaml", "--state-dir", "state", "--run-id", "h",
                       "--operator", "alice", cwd=tmp_path).returncode == 1
    (tmp_path / "go").touch()
    first = subprocess.Popen(ENGINE + ["resume", "h", "--state-dir", "state", "--operator", "alice"],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = tmp_path / "state" / "runs" / "h" / "journal.jsonl"
    deadline = time.monotonic() + 10
    while '"slow"' not in journal.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    size = journal.stat().st_size
    second = runbook_cmd("resume", "h", "--state-dir", "state", "--operator", "bob", cwd=tmp_path)
    assert second.returncode == 5
    assert "alice" in second.stderr and f"pid {first.pid}" in second.stderr
    assert journal.stat().st_size == size
    assert first.wait(timeout=30) == 0
    assert runbook_cmd("audit", "verify", "h", "--state-dir", "state", cwd=tmp_path).returncode == 0


def test_run_with_an_existing_run_id_exits_5(tmp_path):
    (tmp_path / "rb.yaml").write_text("name: A\nsteps:\n  - name: a\n    command: ['true']\n")
    assert runbook_cmd("run", "rb.yaml", "--state-dir", "state", "--run-id", "x", cwd=tmp_path).returncode == 0
    again = runbook_cmd("run", "rb.yaml", "--state-dir", "state", "--run-id", "x", cwd=tmp_path)
    assert again.returncode == 5
    assert "already exists" in again.stderr


# --- changed runbook ---

def test_resume_refuses_a_changed_runbook_unless_allowed(tmp_path):
    rb = tmp_path / "rb.yaml"
    rb.write_text("name: Change\nsteps:\n  - name: gate\n    command: [test, -f, go]\n")
    assert runbook_cmd("run", "rb.yaml", "--state-dir", "state", "--run-id", "c", cwd=tmp_path).returncode == 1
    rb.write_text("name: Change\nsteps:\n  - name: gate\n    command: ['true']\n")
    refused = runbook_cmd("resume", "c", "--state-dir", "state", cwd=tmp_path)
    assert refused.returncode == 2
    assert "modified" in refused.stderr and "--allow-changed" in refused.stderr
    assert "+    command: ['true']" in refused.stderr
    allowed = runbook_cmd("resume", "c", "--state-dir", "state", "--allow-changed", cwd=tmp_path)
    assert allowed.returncode == 0, allowed.stderr
    resumed = [e for e in journal_events(tmp_path / "state", "c") if e["type"] == "run.resumed"]
    assert resumed[-1]["data"]["allow_changed"] is True


# --- secrets and the other commands ---

def test_secret_never_reaches_state_dir_or_output(tmp_path):
    secret = "s3cr3t-Hunter2-value"
    (tmp_path / "inv.yaml").write_text("secrets:\n  token: {env: APP_TOKEN}\n")
    (tmp_path / "rb.yaml").write_text("""\
name: Secret
steps:
  - name: use it
    command: [sh, -c, 'echo "auth=Bearer {{ secrets.token }}"; test -f go']
    register: used
""")
    env = {"APP_TOKEN": secret}
    first = runbook_cmd("run", "rb.yaml", "-i", "inv.yaml", "--state-dir", "state", "--run-id", "s",
                        cwd=tmp_path, env=env)
    (tmp_path / "go").touch()
    second = runbook_cmd("resume", "s", "--state-dir", "state", "--output", "json", cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    show = runbook_cmd("show", "s", "--state-dir", "state", cwd=tmp_path)
    export = runbook_cmd("audit", "export", "s", "--state-dir", "state", cwd=tmp_path)
    for text in (first.stdout, first.stderr, second.stdout, second.stderr, show.stdout, export.stdout):
        assert secret not in text
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert "auth=Bearer ***" in export.stdout


def test_runs_lists_status_operator_and_duration(tmp_path):
    (tmp_path / "rb.yaml").write_text("name: Listed\nsteps:\n  - name: a\n    command: ['true']\n")
    runbook_cmd("run", "rb.yaml", "--state-dir", "state", "--run-id", "ok1", "--operator", "carol", cwd=tmp_path)
    (tmp_path / "bad.yaml").write_text("name: Broken\nsteps:\n  - name: a\n    command: ['false']\n")
    runbook_cmd("run", "bad.yaml", "--state-dir", "state", "--run-id", "bad1", cwd=tmp_path)
    listed = runbook_cmd("runs", "--state-dir", "state", "--output", "json", cwd=tmp_path)
    runs = {r["run_id"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert runs["ok1"]["status"] == "completed" and runs["ok1"]["operator"] == "carol"
    assert runs["bad1"]["status"] == "failed" and runs["bad1"]["runbook"] == "Broken"
    assert runs["ok1"]["duration"] is not None
    text = runbook_cmd("runs", "--state-dir", "state", cwd=tmp_path).stdout
    assert "ok1" in text and "completed" in text and "carol" in text


def test_show_lists_each_step_with_attempts_and_checks(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Shown
steps:
  - name: flaky
    command: [sh, -c, 'echo x >> n; test $(wc -l < n) -ge 2']
    retries: 2
    delay: 0
  - name: checked
    command: [echo, hi]
    register: out
    verify:
      - that: out.stdout.strip() == 'hi'
""")
    assert runbook_cmd("run", "rb.yaml", "--state-dir", "state", "--run-id", "v", cwd=tmp_path).returncode == 0
    shown = runbook_cmd("show", "v", "--state-dir", "state", cwd=tmp_path).stdout
    flaky = next(line for line in shown.splitlines() if "flaky" in line)
    assert "x2" in flaky
    assert "verify out.stdout.strip() == 'hi': passed" in shown


def test_second_ctrl_c_exits_at_once(tmp_path):
    """While the first Ctrl-C waits for a step that ignores SIGTERM, a second one exits now."""
    (tmp_path / "rb.yaml").write_text(
        "name: Stubborn\nsteps:\n  - name: ignores TERM\n"
        "    shell: \"trap '' TERM; echo ready > ready.txt; sleep 30\"\n")
    process = subprocess.Popen(ENGINE + ["run", "rb.yaml", "--state-dir", "state", "--run-id", "s"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (tmp_path / "ready.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)   # the engine now waits up to 1 s for TERM, then KILLs
    time.sleep(0.2)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=5) == 130
    assert time.monotonic() - sent < 0.5  # without it: >= 0.8 s (1 s TERM grace, then KILL)
    # the run can still be resumed from what the journal holds
    events = journal_events(tmp_path / "state", "s")
    assert events[0]["type"] == "run.started"


def test_ctrl_c_after_the_run_completed_keeps_its_exit_code(tmp_path):
    """A signal in the last milliseconds (journal already says completed) must not turn into a crash."""
    rb = write_appending_runbook(tmp_path, steps=3, pause=0)
    codes = []
    for trial in range(8):
        run_id = f"late-{trial}"
        process = start_run(tmp_path, rb, run_id)
        journal = tmp_path / "state" / "runs" / run_id / "journal.jsonl"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            if journal.exists() and b"run.completed" in journal.read_bytes():
                break
            time.sleep(0.0005)
        time.sleep(trial * 0.002)
        process.send_signal(signal.SIGINT)
        codes.append(process.wait(timeout=10))
    assert codes == [0] * 8
