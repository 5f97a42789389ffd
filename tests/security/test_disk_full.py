"""Defect 4: a failed or short journal write stops the run cleanly — the journal stays
readable up to the last whole event — and a full or read-only disk is one clear error,
not exit 70. Real small filesystems: tmpfs mounts (needs root; skipped otherwise)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from engine.journal.file import read_events, verify_file
from helpers.run import runbook_cli, write_runbook

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def small_fs(tmp_path):
    mounted = []

    def mount(name: str, size: str = "64k", ro: bool = False) -> Path:
        target = tmp_path / name
        target.mkdir()
        options = f"size={size},mode=0700" + (",ro" if ro else "")
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True)
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_full_disk_stops_the_run_with_a_clear_error_and_a_readable_journal(tmp_path, small_fs):
    state = small_fs("state", "64k")
    write_runbook(tmp_path, """
        name: Fills the disk
        steps:
          - name: Talk
            loop: "{{ range(400) | list }}"
            command: [sh, -c, 'head -c 3000 /dev/zero | tr "\\\\0" x']
    """)
    done = runbook_cli("run", "runbook.yaml", "--run-id", "full", "--state-dir", str(state),
                       cwd=tmp_path)
    assert done.rc not in (0, 70), done.output
    assert "No space left on device" in done.stderr and "Traceback" not in done.output
    assert "runbook resume full" in done.stderr
    journal = state / "runs" / "full" / "journal.jsonl"
    result = read_events(journal)
    assert result.torn_line is None and result.events
    assert verify_file(journal).ok
    assert journal.read_bytes().endswith(b"\n")


def test_a_read_only_state_dir_is_a_clear_error(tmp_path, small_fs):
    state = small_fs("ro", "64k", ro=True)
    write_runbook(tmp_path, "name: x\nsteps:\n  - name: a\n    command: ['true']\n")
    done = runbook_cli("run", "runbook.yaml", "--state-dir", str(state), cwd=tmp_path)
    assert done.rc == 2, done.output
    assert "Read-only file system" in done.stderr and "Traceback" not in done.output
    assert str(state) in done.stderr
