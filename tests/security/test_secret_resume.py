"""Defect 1: a ``secret: true`` input given with ``-e`` reaches a resumed run without ever
being written in clear; a resume without it is refused, naming the missing inputs."""
from __future__ import annotations

from pathlib import Path

from helpers.run import runbook_cli, write_runbook

SECRET = "s3cr-et-Val!9"
SHORT = "k9x"  # shorter than the redactor's substring minimum

RUNBOOK = """
    name: Secret input across a resume
    inputs:
      token: {type: string, secret: true, required: true}
      pin: {type: string, secret: true, required: true}
      region: {type: string, required: true}
    steps:
      - name: Gate
        id: gate
        command: [sh, -c, 'test -e go']
      - name: Use it
        id: use
        command: [sh, -c, 'printf "%s|%s" "$1" "$2" > got', sh, "{{ token }}", "{{ pin }}"]
"""


def _every_byte(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def _failed_run(tmp_path: Path):
    write_runbook(tmp_path, RUNBOOK)
    done = runbook_cli("run", "runbook.yaml", "-e", f"token={SECRET}", "-e",
                       f'{{"pin": "{SHORT}"}}', "-e", "region=eu", "--run-id", "r1",
                       "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 1, done.output
    (tmp_path / "go").write_text("")
    return done


def test_resume_without_the_secret_inputs_is_refused_naming_them(tmp_path):
    _failed_run(tmp_path)
    done = runbook_cli("resume", "r1", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 2, done.output
    assert "token" in done.stderr and "pin" in done.stderr and "RUNBOOK_SECRET_TOKEN" in done.stderr
    assert not (tmp_path / "got").exists()


def test_resume_reads_secret_inputs_from_the_environment(tmp_path):
    first = _failed_run(tmp_path)
    done = runbook_cli("resume", "r1", "--state-dir", "state", cwd=tmp_path,
                       env={"RUNBOOK_SECRET_TOKEN": SECRET, "RUNBOOK_SECRET_PIN": SHORT})
    assert done.rc == 0, done.output
    assert (tmp_path / "got").read_text() == f"{SECRET}|{SHORT}"
    state = _every_byte(tmp_path / "state")
    assert SECRET.encode() not in state and f'"{SHORT}"'.encode() not in state
    assert f"pin={SHORT}".encode() not in state and f'"pin": "{SHORT}"'.encode() not in state
    for out in (first.output, done.output):
        assert SECRET not in out


def test_resume_takes_secret_inputs_with_e_and_refuses_other_names(tmp_path):
    _failed_run(tmp_path)
    refused = runbook_cli("resume", "r1", "--state-dir", "state", "-e", "region=us",
                          "-e", f"token={SECRET}", "-e", f"pin={SHORT}", cwd=tmp_path)
    assert refused.rc == 2 and "region" in refused.stderr, refused.output
    done = runbook_cli("resume", "r1", "--state-dir", "state", "-e", f"token={SECRET}",
                       "-e", f"pin={SHORT}", cwd=tmp_path)
    assert done.rc == 0, done.output
    assert (tmp_path / "got").read_text() == f"{SECRET}|{SHORT}"
    assert SECRET.encode() not in _every_byte(tmp_path / "state")
