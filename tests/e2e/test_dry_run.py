"""The dry-run contract, through the real CLI: read-only steps run, mutating
ones only plan, unknown conditions say "would run if", failures are findings,
the plan ends with the estimate against the RTO — and nothing outside the
state dir changes."""
from __future__ import annotations

import os
import shutil

import pytest
from helpers.run import FIXTURES, journal_lines, runbook_cli, tree_snapshot, write_runbook


@pytest.fixture
def workdir(tmp_path):
    """A working directory with files the mutating runbook would change."""
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "existing.txt").write_text("original\n")
    (work / "sub" / "nested.txt").write_text("nested\n")
    os.chmod(work / "existing.txt", 0o640)
    shutil.copy(FIXTURES / "mutations.yaml", work)
    return work


def _dry_run(workdir, *extra):
    state = workdir.parent / "state"
    return runbook_cli("run", "mutations.yaml", "-e", f"workdir={workdir}", "--dry-run",
                       "--state-dir", state, *extra, cwd=workdir)


def test_dry_run_changes_nothing_outside_the_state_dir(workdir, tmp_path):
    state = tmp_path / "state"
    before = tree_snapshot(tmp_path, exclude=state)
    workdir_mtime = workdir.stat().st_mtime_ns
    done = _dry_run(workdir)
    assert done.rc == 0, done.output
    assert tree_snapshot(tmp_path, exclude=state) == before  # bytes, modes and mtimes
    assert workdir.stat().st_mtime_ns == workdir_mtime  # nothing created or removed there
    for name in ("created-by-command", "created-relative", "redirected.txt", "newdir",
                 "copy.txt", "moved.txt", "parallel-a", "parallel-b"):
        assert not (workdir / name).exists(), name
    assert (workdir / "sub" / "nested.txt").read_text() == "nested\n"
    assert list(state.glob("runs/*/journal.jsonl")), "the rehearsal is journaled in the state dir"


def test_dry_run_plans_mutating_steps_and_runs_read_only_ones(workdir):
    done = _dry_run(workdir)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("DRY RUN of 'Everything mutates'")
    assert any(line.startswith("ok ") and "Probe the working directory" in line for line in lines)
    assert f"would change Create a file with touch: run touch {workdir}/created-by-command" in lines
    assert "would change Append to the existing file: sh -c: echo more >> existing.txt" in lines
    assert f"would change Change permissions in a loop [item 1]: run chmod 000 {workdir}/sub/nested.txt" in lines
    assert "would change Move a file: run mv existing.txt moved.txt" in lines
    assert "would change command: run touch parallel-a" in lines
    planned = [e for e in journal_lines(workdir.parent / "state") if e["type"] == "step.planned"]
    assert len(planned) == 13  # 11 changes, 1 conditional, 1 check of what a change makes
    assert len([e for e in planned if e["data"]["mutates"]]) == 12
    assert not [e for e in journal_lines(workdir.parent / "state") if e["type"] == "step.started"
                and e["data"].get("mutates")], "no mutating step may start in a dry-run"


def test_a_condition_on_an_unknown_result_would_run_if(workdir):
    done = _dry_run(workdir)
    assert "would run if Copy when the append worked: would run if appended.rc == 0" in done.stdout


def test_a_check_of_what_a_planned_step_changes_is_planned_not_run(workdir):
    done = _dry_run(workdir)
    assert ("would check  Probe that only a real run makes true: would check after 'Create a "
            "file with touch' (which this rehearsal only plans): "
            f"check that {workdir}/created-by-command is present") in done.stdout


def test_a_failing_read_only_step_is_a_finding_and_the_rehearsal_goes_on(workdir):
    done = _dry_run(workdir)
    assert done.rc == 0
    assert f"finding      Probe a file nobody makes — {workdir}/never-there.txt does not exist" in done.stdout
    assert "Findings (1):" in done.stdout
    assert "(mutations.yaml:42:5)" in done.stdout
    assert ("Recap: COMPLETED — finding=1, ok=1, would change=11, would check=1, would run if=1"
            in done.stdout)


def test_strict_dry_run_exits_1_on_findings(workdir):
    done = _dry_run(workdir, "--strict")
    assert done.rc == 1
    assert "Findings (1):" in done.stdout


def test_a_failed_verification_is_a_finding_too(tmp_path):
    (tmp_path / "replicas").write_text("1\n")
    write_runbook(tmp_path, """
        name: Verify in rehearsal
        steps:
          - name: Count replicas
            command: [cat, replicas]
            mutates: false
            register: replicas
            verify:
              - that: replicas.stdout | int >= 2
                message: fewer than 2 replicas
          - name: Fail over
            command: [touch, failed-over]
    """)
    done = runbook_cli("run", "runbook.yaml", "--dry-run", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 0, done.output
    assert "finding      Count replicas — fewer than 2 replicas" in done.stdout
    assert "would change Fail over: run touch failed-over" in done.stdout  # the rehearsal went on
    strict = runbook_cli("run", "runbook.yaml", "--dry-run", "--strict", "--state-dir", "state",
                         cwd=tmp_path)
    assert strict.rc == 1
    assert not (tmp_path / "failed-over").exists()


def test_dry_run_ends_with_the_plan_and_the_estimate_against_the_rto(workdir):
    done = _dry_run(workdir)
    text = done.stdout
    plan = text[text.index("\nPlan:\n"):text.index("\nFindings")]
    rows = plan.strip().splitlines()[1:]
    assert rows[0].split()[:4] == ["Probe", "the", "working", "directory"]
    assert "10s author  run touch" in rows[1]
    assert "1m00s author  sh -c: echo data" in rows[3]
    assert "1.0s default run touch created-relative" in rows[2]  # no estimate, no history
    # 1m10s from the author, 1 s for each of the 11 other planned steps, the conditional
    # one only in the upper bound; the two probes that ran took (almost) no time.
    assert rows[-1].strip().startswith("Estimated time to recovery: 1m20s–1m21s against RTO "
                                       "30m00s — within RTO (steps by source — author's "
                                       "estimate: 2, default: 11, measured now: 2)")


def test_estimate_over_the_rto_is_flagged(tmp_path):
    write_runbook(tmp_path, """
        name: Too slow
        rto: 15m
        steps:
          - {name: Restore, command: [touch, restored], expected_duration: 10m}
          - {name: Reindex, command: [touch, reindexed], expected_duration: 8m}
    """)
    done = runbook_cli("run", "runbook.yaml", "--dry-run", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 0
    assert "Estimated time to recovery: 18m00s against RTO 15m00s — EXCEEDS RTO" in done.stdout
    assert not (tmp_path / "restored").exists()


def test_a_read_only_result_drives_later_decisions_in_a_dry_run(tmp_path):
    (tmp_path / "role").write_text("replica\n")
    write_runbook(tmp_path, """
        name: Promote if replica
        steps:
          - name: Read the role
            command: [cat, role]
            mutates: false
            register: role
          - name: Promote
            command: [touch, promoted]
            when: role.stdout == 'replica'
          - name: Demote
            command: [touch, demoted]
            when: role.stdout == 'primary'
    """)
    done = runbook_cli("run", "runbook.yaml", "--dry-run", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 0, done.output
    assert "would change Promote: run touch promoted" in done.stdout
    assert "skipped      Demote — condition false: role.stdout == 'primary'" in done.stdout
    assert not (tmp_path / "promoted").exists()


def test_dry_run_json_output_has_planned_events(workdir):
    done = _dry_run(workdir, "--output", "json")
    events = done.events()
    assert events[0]["type"] == "run.started" and events[0]["data"]["dry_run"] is True
    planned = [e for e in events if e["type"] == "step.planned"]
    assert planned[0]["data"]["plan"] == f"run touch {workdir}/created-by-command"
    final = events[-1]
    assert final["type"] == "run.completed"
    assert 81.0 <= final["data"]["estimate"] < 81.5
    assert 80.0 <= final["data"]["estimate_low"] < 80.5
    assert [f["step"] for f in final["data"]["findings"]] == ["probe-a-file-nobody-makes"]
