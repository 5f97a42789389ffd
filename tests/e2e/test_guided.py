"""Guided execution in real pseudo-terminals (pexpect): step mode, manual steps, approvals, rollback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

ENGINE = [sys.executable, "-m", "engine"]


def spawn(tmp_path: Path, *args: str) -> pexpect.spawn:
    env = {**os.environ, "COLUMNS": "120", "TERM": "dumb"}
    return pexpect.spawn(sys.executable, ["-m", "engine", *args], cwd=str(tmp_path), env=env,
                         encoding="utf-8", timeout=20, dimensions=(50, 160))


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(ENGINE + list(args), cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def events(tmp_path: Path, run_id: str) -> list[dict]:
    path = tmp_path / "state" / "runs" / run_id / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def of_type(evts: list[dict], kind: str) -> list[dict]:
    return [e for e in evts if e["type"] == kind]


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus


GUIDED = """\
name: Guided drill
rto: 10m
steps:
  - name: Check the dashboards
    description: Look at **error rates** before touching anything.
    command: [sh, -c, 'echo one >> log.txt']
    expected_duration: 1m
  - name: Drain traffic
    command: [sh, -c, 'echo two >> log.txt']
    expected_duration: 2m
  - name: Flush caches
    command: [sh, -c, 'echo three >> log.txt']
"""


def test_step_mode_shows_each_step_and_records_yes_skip_and_note(tmp_path):
    (tmp_path / "rb.yaml").write_text(GUIDED)
    child = spawn(tmp_path, "run", "rb.yaml", "--step", "--state-dir", "state", "--run-id", "g",
                  "--operator", "dana")
    child.expect_exact("[1/3] Check the dashboards")
    child.expect("error rates")
    child.expect_exact("plan:     run sh -c 'echo one >> log.txt'")
    child.expect_exact("expected: 1m00s")
    child.expect("RTO: .* elapsed, .* left of 10m00s")
    child.expect_exact("Run this step? [y/s/a/c/n/?]")
    child.sendline("?")
    child.expect_exact("add a note to the journal")
    child.sendline("y")
    child.expect_exact("[2/3] Drain traffic")
    child.expect_exact("Run this step?")
    child.sendline("s")
    child.expect_exact("Reason for skipping:")
    child.sendline("traffic already drained by the LB team")
    child.expect_exact("[3/3] Flush caches")
    child.expect_exact("Run this step?")
    child.sendline("n")
    child.expect_exact("Note:")
    child.sendline("cache hit rate 12% before flush")
    child.expect_exact("Run this step?")
    child.sendline("y")
    assert finish(child) == 0
    assert (tmp_path / "log.txt").read_text().split() == ["one", "three"]
    evts = events(tmp_path, "g")
    confirmed = of_type(evts, "operator.confirmed")
    assert [e["step"]["id"] for e in confirmed] == ["check-the-dashboards", "flush-caches"]
    assert all(e["operator"] == "dana" for e in confirmed)
    skipped = of_type(evts, "operator.skipped")
    assert skipped[0]["data"]["reason"] == "traffic already drained by the LB team"
    assert of_type(evts, "operator.note")[0]["data"]["note"] == "cache hit rate 12% before flush"


def test_failed_step_can_be_retried_then_skipped_with_a_reason(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Failing
steps:
  - name: Flaky check
    command: [sh, -c, 'echo try >> tries.txt; exit 1']
  - name: After
    command: [touch, after.txt]
""")
    child = spawn(tmp_path, "run", "rb.yaml", "--step", "--state-dir", "state", "--run-id", "f")
    child.expect_exact("Run this step?")
    child.sendline("y")
    child.expect_exact("FAILED — Flaky check: exited with rc=1")
    child.expect_exact("What now? [r/s/a/b/n]")
    child.sendline("r")
    child.expect_exact("What now?")
    child.sendline("s")
    child.expect_exact("Reason for skipping:")
    child.sendline("known flaky, checked by hand")
    child.expect_exact("Run this step?")
    child.sendline("c")
    assert finish(child) == 0
    assert (tmp_path / "tries.txt").read_text().split() == ["try", "try"]
    assert (tmp_path / "after.txt").exists()
    evts = events(tmp_path, "f")
    assert [e["data"]["decision"] for e in of_type(evts, "operator.decided")] == ["retry"]
    assert of_type(evts, "operator.skipped")[0]["data"]["reason"] == "known flaky, checked by hand"


def test_abort_exits_4_and_the_run_can_be_resumed(tmp_path):
    (tmp_path / "rb.yaml").write_text(GUIDED)
    child = spawn(tmp_path, "run", "rb.yaml", "--step", "--state-dir", "state", "--run-id", "a")
    child.expect_exact("Run this step?")
    child.sendline("y")
    child.expect_exact("[2/3] Drain traffic")
    child.expect_exact("Run this step?")
    child.sendline("a")
    assert finish(child) == 4
    assert of_type(events(tmp_path, "a"), "run.aborted")
    resumed = run_cli(tmp_path, "resume", "a", "--state-dir", "state", "--operator", "erin")
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "log.txt").read_text().split() == ["one", "two", "three"]


def test_rollback_after_a_failure_undoes_completed_steps_in_reverse(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Rollback
steps:
  - name: Scale down
    set_fact: {replicas: 3}
    rollback:
      - name: Scale back up
        command: [sh, -c, 'echo "up to {{ replicas }}" >> undo.txt']
  - name: Stop writers
    command: [sh, -c, 'echo stopped >> undo.txt']
    rollback:
      - name: Start writers
        command: [sh, -c, 'echo started >> undo.txt']
  - name: Restore
    command: ["false"]
""")
    child = spawn(tmp_path, "run", "rb.yaml", "--step", "--state-dir", "state", "--run-id", "r")
    for _ in range(3):
        child.expect_exact("Run this step?")
        child.sendline("y")
    child.expect_exact("What now? [r/s/a/b/n]")
    child.sendline("b")
    child.expect_exact("Scale back up")
    assert finish(child) == 1
    assert (tmp_path / "undo.txt").read_text().splitlines() == ["stopped", "started", "up to 3"]
    evts = events(tmp_path, "r")
    started = of_type(evts, "rollback.started")[0]
    assert started["data"]["steps"] == ["stop-writers", "scale-down"]
    assert of_type(evts, "rollback.completed")
    again = run_cli(tmp_path, "resume", "r", "--state-dir", "state")
    assert again.returncode == 0 and "rolled back" in again.stderr + again.stdout


def test_on_failure_rollback_without_a_terminal(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Auto rollback
on_failure: rollback
steps:
  - name: Change
    command: [touch, changed.txt]
    rollback:
      - command: [rm, -f, changed.txt]
  - name: Break
    command: ["false"]
""")
    result = run_cli(tmp_path, "run", "rb.yaml", "--state-dir", "state", "--run-id", "x")
    assert result.returncode == 1
    assert not (tmp_path / "changed.txt").exists()
    assert "rolled back 1 step(s)" in result.stdout


def test_step_mode_without_a_terminal_or_answers_is_refused(tmp_path):
    (tmp_path / "rb.yaml").write_text(GUIDED)
    result = run_cli(tmp_path, "run", "rb.yaml", "--step", "--state-dir", "state")
    assert result.returncode == 2
    assert "--answers" in result.stderr
    assert not (tmp_path / "state").exists()


def test_answers_file_scripts_step_mode_and_is_recorded_as_scripted(tmp_path):
    (tmp_path / "rb.yaml").write_text(GUIDED)
    (tmp_path / "answers.yaml").write_text(
        "check-the-dashboards: yes\ndrain-traffic: {answer: skip, reason: drill}\nflush-caches: yes\n")
    result = run_cli(tmp_path, "run", "rb.yaml", "--step", "--answers", "answers.yaml",
                     "--state-dir", "state", "--run-id", "s")
    assert result.returncode == 0, result.stderr
    evts = events(tmp_path, "s")
    assert all(e["data"]["scripted"] for e in of_type(evts, "operator.confirmed"))
    assert of_type(evts, "operator.skipped")[0]["data"] == {"reason": "drill", "scripted": True}


MANUAL = """\
name: Announce
steps:
  - name: Tell stakeholders
    manual:
      instructions: Update the status page to "Monitoring".
      checklist: [Status page updated, Leadership briefed]
      evidence: required
  - name: Done
    command: [touch, done.txt]
"""


def test_manual_checklist_confirmed_through_answers(tmp_path):
    (tmp_path / "rb.yaml").write_text(MANUAL)
    (tmp_path / "answers.yaml").write_text(
        "tell-stakeholders: {checklist: all, evidence: INC-4242, note: posted at 03:12}\n")
    result = run_cli(tmp_path, "run", "rb.yaml", "--answers", "answers.yaml", "--state-dir", "state",
                     "--run-id", "m")
    assert result.returncode == 0, result.stderr
    evts = events(tmp_path, "m")
    items = [e["data"]["item"] for e in of_type(evts, "operator.confirmed")]
    assert items == ["Status page updated", "Leadership briefed"]
    succeeded = [e for e in of_type(evts, "step.succeeded") if e["step"]["id"] == "tell-stakeholders"]
    assert succeeded[0]["data"]["value"]["evidence"] == "INC-4242"


def test_manual_step_on_a_terminal_asks_item_by_item(tmp_path):
    (tmp_path / "rb.yaml").write_text(MANUAL)
    child = spawn(tmp_path, "run", "rb.yaml", "--state-dir", "state", "--run-id", "t",
                  "--operator", "frank")
    child.expect_exact("MANUAL STEP: Tell stakeholders")
    child.expect_exact("Status page updated — done?")
    child.sendline("y")
    child.expect_exact("Leadership briefed — done?")
    child.sendline("y")
    child.expect_exact("Evidence (ticket, link):")
    child.sendline("")
    child.expect_exact("Evidence (ticket, link):")  # required: asked again
    child.sendline("https://status.example.com/incidents/1")
    assert finish(child) == 0
    evts = events(tmp_path, "t")
    assert {e["operator"] for e in of_type(evts, "operator.confirmed")} == {"frank"}


def test_manual_step_without_terminal_pauses_and_another_operator_resumes(tmp_path):
    (tmp_path / "rb.yaml").write_text(MANUAL)
    first = run_cli(tmp_path, "run", "rb.yaml", "--state-dir", "state", "--run-id", "p",
                    "--operator", "gina")
    assert first.returncode == 3
    assert "needs an operator" in first.stdout
    (tmp_path / "answers.yaml").write_text("tell-stakeholders: {checklist: all, evidence: INC-1}\n")
    second = run_cli(tmp_path, "resume", "p", "--answers", "answers.yaml", "--state-dir", "state",
                     "--operator", "hank")
    assert second.returncode == 0, second.stderr
    evts = events(tmp_path, "p")
    assert of_type(evts, "run.started")[0]["operator"] == "gina"
    assert of_type(evts, "run.resumed")[0]["operator"] == "hank"
    assert {e["operator"] for e in of_type(evts, "operator.confirmed")} == {"hank"}
    assert (tmp_path / "done.txt").exists()


def test_dry_run_lists_manual_and_approval_steps_without_asking(tmp_path):
    (tmp_path / "rb.yaml").write_text(MANUAL + "  - name: Sign off\n    approve: {min_approvals: 2}\n")
    result = run_cli(tmp_path, "run", "rb.yaml", "--dry-run", "--state-dir", "state")
    assert result.returncode == 0
    assert "operator: Update the status page" in result.stdout
    assert "wait for 2 approval(s) from anyone" in result.stdout


APPROVAL = """\
name: Failover approval
steps:
  - name: Promote replica
    approve: {approvers: [alice, bob, carol], min_approvals: 2, separate_duty: true}
  - name: Promoted
    command: [touch, promoted.txt]
"""


def test_quorum_of_two_with_separate_duty_duplicates_and_strangers(tmp_path):
    (tmp_path / "rb.yaml").write_text(APPROVAL)
    started = run_cli(tmp_path, "run", "rb.yaml", "--state-dir", "state", "--run-id", "q",
                      "--operator", "alice")
    assert started.returncode == 3
    assert "runbook approve q promote-replica --operator NAME" in started.stdout

    def approve(name: str) -> subprocess.CompletedProcess:
        return run_cli(tmp_path, "approve", "q", "promote-replica", "--operator", name,
                       "--state-dir", "state", "--comment", f"ok from {name}")

    assert approve("alice").returncode == 2  # started the run: separate duty
    stranger = approve("mallory")
    assert stranger.returncode == 2 and "approvers are alice, bob, carol" in stranger.stderr
    first = approve("bob")
    assert first.returncode == 0 and "1 more needed" in first.stdout
    assert approve("bob").returncode == 2  # a second vote by the same person
    waiting = run_cli(tmp_path, "resume", "q", "--state-dir", "state")
    assert waiting.returncode == 3 and "1 of 2 (bob)" in waiting.stdout
    assert not (tmp_path / "promoted.txt").exists()
    second = approve("carol")
    assert second.returncode == 0 and "quorum met" in second.stdout
    done = run_cli(tmp_path, "resume", "q", "--state-dir", "state")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "promoted.txt").exists()
    granted = of_type(events(tmp_path, "q"), "approval.granted")
    assert [(e["operator"], e["data"]["comment"]) for e in granted] == [
        ("bob", "ok from bob"), ("carol", "ok from carol")]
    assert run_cli(tmp_path, "audit", "verify", "q", "--state-dir", "state").returncode == 0


def test_rto_clock_warns_when_remaining_estimates_exceed_the_budget(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Tight
rto: 1m
steps:
  - name: Long restore
    command: ['true']
    expected_duration: 50m
""")
    child = spawn(tmp_path, "run", "rb.yaml", "--step", "--state-dir", "state")
    child.expect("WARNING: remaining steps are expected to take 50m00s, more than the time left")
    child.expect_exact("Run this step?")
    child.sendline("y")
    assert finish(child) == 0


@pytest.mark.parametrize("answer", ["s", "a"])
def test_secrets_are_masked_in_the_step_header(tmp_path, answer):
    (tmp_path / "inv.yaml").write_text("secrets:\n  pw: {env: THE_PW}\n")
    (tmp_path / "rb.yaml").write_text(
        "name: S\nsteps:\n  - name: Use secret\n    command: [echo, 'pw={{ secrets.pw }}']\n")
    env = {**os.environ, "THE_PW": "hunter2-secret", "TERM": "dumb"}
    child = pexpect.spawn(sys.executable, ["-m", "engine", "run", "rb.yaml", "-i", "inv.yaml",
                                           "--step", "--state-dir", "state"],
                          cwd=str(tmp_path), env=env, encoding="utf-8", timeout=20)
    child.expect_exact("Run this step?")
    assert "hunter2-secret" not in child.before
    assert "pw=***" in child.before
    child.sendline(answer)
    if answer == "s":
        child.expect_exact("Reason for skipping:")
        child.sendline("no")
    child.expect(pexpect.EOF)
    assert "hunter2-secret" not in child.before


def test_a_failed_rollback_is_resumed_where_it_stopped(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Resumable rollback
on_failure: rollback
steps:
  - name: First change
    command: [sh, -c, 'echo first >> log.txt']
    rollback:
      - name: Undo first
        command: [sh, -c, 'echo undo-first >> log.txt']
  - name: Second change
    command: [sh, -c, 'echo second >> log.txt']
    rollback:
      - name: Undo second
        command: [sh, -c, 'echo undo-second >> log.txt']
      - name: Undo second needs the gate
        command: [sh, -c, 'test -f gate && echo undo-second-gated >> log.txt']
  - name: Break
    command: ["false"]
""")
    first = run_cli(tmp_path, "run", "rb.yaml", "--state-dir", "state", "--run-id", "rr")
    assert first.returncode == 1
    assert "rollback failed" in first.stdout
    (tmp_path / "gate").touch()
    second = run_cli(tmp_path, "resume", "rr", "--state-dir", "state")
    assert second.returncode == 1, second.stderr
    assert (tmp_path / "log.txt").read_text().split() == [
        "first", "second", "undo-second", "undo-second-gated", "undo-first"]
    evts = events(tmp_path, "rr")
    assert len(of_type(evts, "rollback.started")) == 1
    assert len(of_type(evts, "rollback.completed")) == 1
    done = run_cli(tmp_path, "resume", "rr", "--state-dir", "state")
    assert done.returncode == 0 and "rolled back" in done.stderr + done.stdout


def test_rollback_of_a_looped_step_undoes_every_item_once(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Looped rollback
on_failure: rollback
steps:
  - name: Scale down
    command: [sh, -c, 'echo "down {{ item }}" >> log.txt']
    loop: [api, worker]
    rollback:
      - name: Scale up
        command: [sh, -c, 'test -f gate-{{ item }} && echo "up {{ item }}" >> log.txt']
  - name: Break
    command: ["false"]
""")
    (tmp_path / "gate-worker").touch()
    first = run_cli(tmp_path, "run", "rb.yaml", "--state-dir", "state", "--run-id", "lr")
    assert first.returncode == 1 and "rollback failed" in first.stdout  # api's gate is missing
    (tmp_path / "gate-api").touch()
    assert run_cli(tmp_path, "resume", "lr", "--state-dir", "state").returncode == 1
    assert (tmp_path / "log.txt").read_text().splitlines() == [
        "down api", "down worker", "up worker", "up api"]


def test_rollback_strategy_always_leaves_things_as_the_drill_found_them(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Drill that cleans up
rollback_strategy: always
steps:
  - name: Scale down
    command: [sh, -c, 'echo down >> log.txt']
    rollback:
      - name: Scale up
        command: [sh, -c, 'echo up >> log.txt']
  - name: Check
    command: ['true']
""")
    result = run_cli(tmp_path, "run", "rb.yaml", "--state-dir", "state", "--run-id", "al")
    assert result.returncode == 0, result.stdout
    assert (tmp_path / "log.txt").read_text().split() == ["down", "up"]
    done = of_type(events(tmp_path, "al"), "rollback.completed")
    assert done and done[0]["data"]["completed_run"] is True


def test_rollback_strategy_never_refuses_to_roll_back(tmp_path):
    (tmp_path / "rb.yaml").write_text("""\
name: Never undo
rollback_strategy: never
on_failure: rollback
steps:
  - name: Change
    command: [sh, -c, 'echo change >> log.txt']
    rollback:
      - command: [sh, -c, 'echo undo >> log.txt']
  - name: Break
    command: ["false"]
""")
    result = run_cli(tmp_path, "run", "rb.yaml", "--state-dir", "state", "--run-id", "nv",
                     "--on-failure", "rollback")
    assert result.returncode == 1
    assert (tmp_path / "log.txt").read_text().split() == ["change"]
    assert not of_type(events(tmp_path, "nv"), "rollback.started")
