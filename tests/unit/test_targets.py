"""The step keyword ``target:``: one target, a group fanned out per target (each invocation
journaled on its own), ``--limit``, rollback on the target that was changed, and resume."""
from __future__ import annotations

import textwrap
from pathlib import Path

from helpers.run import run_inprocess

INVENTORY = """
vars: {site: lab}
secrets:
  token: {value: s3cr3t-token}
groups:
  dbs:
    vars: {role: db}
    targets:
      db1: {port: 1}
      db2: {port: 2}
      db3: {port: 3}
targets:
  web: {url: "http://web/{{ site }}", auth: "{{ secrets.token }}"}
"""


def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inv.yaml"
    path.write_text(textwrap.dedent(INVENTORY))
    return path


def test_a_group_target_runs_once_per_target_and_registers_results(tmp_path):
    out = tmp_path / "out.txt"
    ran = run_inprocess(tmp_path, f"""
        name: fan-out
        steps:
          - id: touch
            target: dbs
            command: [sh, -c, "echo {{{{ target.name }}}}:{{{{ target.port }}}}:{{{{ target.role }}}} >> {out}"]
            register: touched
          - id: check
            assert: {{that: ["touched.results | length == 3",
                            "touched.results | map(attribute='target') | list == ['db1', 'db2', 'db3']"]}}
    """, inventories=[inventory(tmp_path)])
    assert ran.status == "completed"
    assert out.read_text().split() == ["db1:1:db", "db2:2:db", "db3:3:db"]
    started = [e.step["target"] for e in ran.of("touch", "step.started")]
    assert started == ["db1", "db2", "db3"]


def test_a_single_target_registers_a_plain_value_and_sees_rendered_settings(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: one
        steps:
          - id: show
            target: web
            command: [echo, "{{ target.url }}"]
            register: shown
          - assert: {that: ["shown.stdout == 'http://web/lab'", "shown.target == 'web'"]}
    """, inventories=[inventory(tmp_path)])
    assert ran.status == "completed"
    # the secret rendered into the target's settings never reaches the journal
    assert all("s3cr3t-token" not in repr(e.data) for e in ran.events)


def test_limit_keeps_only_matching_targets(tmp_path):
    out = tmp_path / "out.txt"
    ran = run_inprocess(tmp_path, f"""
        name: limited
        steps:
          - id: touch
            target: [dbs, web]
            command: [sh, -c, "echo {{{{ target.name }}}} >> {out}"]
    """, inventories=[inventory(tmp_path)], limit="db*,!db2")
    assert ran.status == "completed"
    assert out.read_text().split() == ["db1", "db3"]
    skipped = {e.step["target"] for e in ran.of("touch", "step.skipped")}
    assert skipped == {"db2", "web"}


def test_parallel_forks_over_targets(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: forks
        steps:
          - id: slow
            target: dbs
            parallel: 3
            command: [sleep, "0.5"]
    """, inventories=[inventory(tmp_path)])
    assert ran.status == "completed"
    first_end = min(e.ts for e in ran.of("slow", "step.succeeded"))
    last_start = max(e.ts for e in ran.of("slow", "step.started"))
    assert last_start < first_end  # all three were running at once


def test_an_unknown_target_fails_the_step_with_a_suggestion(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: typo
        steps:
          - id: touch
            target: db
            command: ["true"]
    """, inventories=[inventory(tmp_path)])
    assert ran.status == "failed"
    message = ran.end("touch").data["message"]
    assert "target 'db' is not an inventory target or group" in message
    assert "did you mean" in message


def test_rollback_runs_against_each_target_it_changed(tmp_path):
    out = tmp_path / "out.txt"
    ran = run_inprocess(tmp_path, f"""
        name: undo
        on_failure: rollback
        steps:
          - id: change
            target: dbs
            command: [sh, -c, "echo do-{{{{ target.name }}}} >> {out}"]
            rollback:
              - id: undo-change
                command: [sh, -c, "echo undo-{{{{ target.name }}}} >> {out}"]
          - id: boom
            command: ["false"]
    """, inventories=[inventory(tmp_path)])
    assert ran.status == "failed"
    assert out.read_text().split() == ["do-db1", "do-db2", "do-db3",
                                       "undo-db3", "undo-db2", "undo-db1"]
    assert [e.step["target"] for e in ran.of("undo-change", "step.succeeded")] == [
        "db3", "db2", "db1"]


def test_resume_reruns_only_the_targets_that_did_not_finish(tmp_path):
    out = tmp_path / "out.txt"
    gate = tmp_path / "gate"
    from engine.run.resume import ResumeRequest, resume_run

    ran = run_inprocess(tmp_path, f"""
        name: resume
        steps:
          - id: touch
            target: dbs
            command: [sh, -c, "test {{{{ target.name }}}} != db2 -o -f {gate} && echo {{{{ target.name }}}} >> {out}"]
            ignore_errors: false
    """, inventories=[inventory(tmp_path)])
    assert ran.status == "failed"
    assert out.read_text().split() == ["db1"]
    gate.touch()
    handle = resume_run(ResumeRequest(run_id=ran.handle.run_id, state_dir=str(tmp_path / "state"),
                                      operator="tester"))
    assert handle.outcome.status == "completed"
    assert out.read_text().split() == ["db1", "db2", "db3"]
