"""Defect 5: the state dir never follows a planted symlink, is checked for its owner and
mode, and run directories are created 0700."""
from __future__ import annotations

import os
import stat

from helpers.run import runbook_cli, write_runbook

GATED = "name: x\nsteps:\n  - name: gate\n    command: [test, -e, go]\n"


def test_a_planted_lock_symlink_is_refused_and_its_target_untouched(tmp_path):
    write_runbook(tmp_path, GATED)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "state" / "runs" / "r"
    run.mkdir(parents=True, mode=0o700)
    (tmp_path / "state").chmod(0o700)
    (tmp_path / "state" / "runs").chmod(0o700)
    (run / "lock").symlink_to(victim)
    done = runbook_cli("run", "runbook.yaml", "--run-id", "r", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 2, done.output
    assert "lock" in done.stderr and "Traceback" not in done.output
    assert victim.read_text() == "precious\n"


def test_a_planted_journal_symlink_is_refused_and_its_target_untouched(tmp_path):
    write_runbook(tmp_path, GATED)
    assert runbook_cli("run", "runbook.yaml", "--run-id", "r", "--state-dir", "state",
                       cwd=tmp_path).rc == 1
    journal = tmp_path / "state" / "runs" / "r" / "journal.jsonl"
    victim = tmp_path / "victim.jsonl"
    victim.write_bytes(journal.read_bytes())
    before = victim.read_bytes()
    journal.unlink()
    journal.symlink_to(victim)
    (tmp_path / "go").touch()
    for args in (("resume", "r"), ("approve", "r", "gate")):
        done = runbook_cli(*args, "--state-dir", "state", cwd=tmp_path)
        assert done.rc == 2, done.output
        assert "symlink" in done.stderr, done.output
    assert victim.read_bytes() == before


def test_a_symlinked_run_directory_is_refused(tmp_path):
    write_runbook(tmp_path, GATED)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "state" / "runs").mkdir(parents=True, mode=0o700)
    (tmp_path / "state").chmod(0o700)
    (tmp_path / "state" / "runs" / "r").symlink_to(elsewhere)
    done = runbook_cli("run", "runbook.yaml", "--run-id", "r", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 2 and "symlink" in done.stderr, done.output
    assert list(elsewhere.iterdir()) == []


def test_run_directories_are_private_and_a_world_writable_state_dir_is_refused(tmp_path):
    write_runbook(tmp_path, GATED)
    (tmp_path / "go").touch()
    assert runbook_cli("run", "runbook.yaml", "--run-id", "r", "--state-dir", "state",
                       cwd=tmp_path).rc == 0
    for path in (tmp_path / "state", tmp_path / "state" / "runs", tmp_path / "state/runs/r"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    (tmp_path / "state").chmod(0o777)
    done = runbook_cli("run", "runbook.yaml", "--run-id", "r2", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 2 and "writable" in done.stderr, done.output
