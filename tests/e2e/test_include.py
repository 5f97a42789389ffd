"""``include``: steps from another file, compiled in place, fingerprinted for resume."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ENGINE = [sys.executable, "-m", "engine"]

MAIN = """\
name: With includes
inputs:
  who: {type: string, default: ops}
steps:
  - name: before
    command: [sh, -c, 'echo before >> log.txt']
  - name: Restore sequence
    include: fragments/restore.yaml
    vars: {target: primary}
  - name: after
    command: [sh, -c, 'echo "after {{ restored.stdout }}" >> log.txt']
"""

RESTORE = """\
- name: restore
  command: [sh, -c, 'echo "restore {{ target }} by {{ who }}" >> log.txt; echo done']
  register: restored
- name: gate
  command: [test, -f, go]
"""


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(ENGINE + list(args), cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)


def write(tmp_path: Path, restore: str = RESTORE) -> None:
    (tmp_path / "fragments").mkdir(exist_ok=True)
    (tmp_path / "main.yaml").write_text(MAIN)
    (tmp_path / "fragments" / "restore.yaml").write_text(restore)


def test_included_steps_run_in_place_with_the_include_vars(tmp_path):
    write(tmp_path)
    (tmp_path / "go").touch()
    result = cli(tmp_path, "run", "main.yaml", "--state-dir", "state")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "log.txt").read_text().splitlines() == [
        "before", "restore primary by ops", "after done"]


def test_errors_in_an_included_file_point_into_that_file(tmp_path):
    write(tmp_path, "- name: typo\n  comand: [true]\n")
    result = cli(tmp_path, "validate", "main.yaml")
    assert result.returncode == 2
    fragment = str((tmp_path / "fragments" / "restore.yaml").resolve())
    assert f"{fragment}:2:3: unknown action 'comand' (did you mean 'command'?)" in result.stderr


def test_a_missing_included_file_is_reported_at_the_include(tmp_path):
    (tmp_path / "main.yaml").write_text(MAIN)
    result = cli(tmp_path, "validate", "main.yaml")
    assert result.returncode == 2
    assert "main.yaml:8:14: cannot include" in result.stderr


def test_an_include_cycle_is_an_error_not_a_hang(tmp_path):
    write(tmp_path, "- include: ../main-steps.yaml\n")
    (tmp_path / "main-steps.yaml").write_text("- include: fragments/restore.yaml\n")
    result = cli(tmp_path, "validate", "main.yaml")
    assert result.returncode == 2 and "include cycle" in result.stderr


def test_resume_refuses_a_changed_included_file(tmp_path):
    write(tmp_path)
    assert cli(tmp_path, "run", "main.yaml", "--state-dir", "state", "--run-id", "i").returncode == 1
    started = json.loads((tmp_path / "state/runs/i/journal.jsonl").read_text().splitlines()[0])
    fragment = str((tmp_path / "fragments" / "restore.yaml").resolve())
    assert started["data"]["includes"] == [fragment]
    assert fragment in started["data"]["fingerprints"]
    (tmp_path / "fragments" / "restore.yaml").write_text(RESTORE.replace("test, -f, go", "'true'"))
    refused = cli(tmp_path, "resume", "i", "--state-dir", "state")
    assert refused.returncode == 2 and f"modified: {fragment}" in refused.stderr
    allowed = cli(tmp_path, "resume", "i", "--state-dir", "state", "--allow-changed")
    assert allowed.returncode == 0, allowed.stderr
    assert (tmp_path / "log.txt").read_text().count("restore primary") == 1


def test_validating_a_directory_checks_step_files_through_their_includers(tmp_path):
    write(tmp_path)
    result = cli(tmp_path, "validate", ".")
    assert result.returncode == 0, result.stderr
    assert "ok: 1 runbook(s) valid" in result.stdout


def test_dry_run_plans_included_steps(tmp_path):
    write(tmp_path)
    result = cli(tmp_path, "run", "main.yaml", "--dry-run", "--state-dir", "state")
    assert result.returncode == 0
    assert "would change restore: run sh -c" in result.stdout
    assert not (tmp_path / "log.txt").exists()
