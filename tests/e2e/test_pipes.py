"""``runbook … | head``: a reader that goes away is a normal end — exit 0, nothing on stderr.

Two real pipes: a shell pipeline into ``head -1`` with output far larger than the pipe's
buffer (so the writer does hit the closed pipe), and a pipe whose reading end is closed
before the command writes anything (the final flush at exit must not complain either).
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from helpers.run import cli_env, runbook_cli, write_runbook

LOOP = """\
name: Loop
steps:
  - name: Many
    command: [echo, "{{ item }}"]
    loop: "{{ range(300) | list }}"
"""


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipes")
    write_runbook(tmp, LOOP, "loop.yaml")
    for run_id in ("big", "other"):
        assert runbook_cli("run", "loop.yaml", "--state-dir", "state", "--run-id", run_id,
                           cwd=tmp).rc == 0
    return tmp


COMMANDS = [["runs"], ["runs", "--output", "json"], ["show", "big"], ["actions"],
            ["audit", "export", "big"], ["report", "big"], ["report", "big", "--format", "html"],
            ["history", "Loop"], ["schema"]]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_head_closing_the_pipe_is_a_normal_end(state, args):
    quoted = " ".join(args)
    script = (f"{sys.executable} -m engine {quoted} --state-dir state 2>err.txt | head -1 "
              "> /dev/null; echo ${PIPESTATUS[0]}")
    if args[0] in ("actions", "schema"):
        script = script.replace(" --state-dir state", "")
    done = subprocess.run(["bash", "-c", script], cwd=state, env=cli_env(), capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "0", (done.stdout, (state / "err.txt").read_text())
    assert (state / "err.txt").read_text() == ""


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_pipe_closed_before_the_first_write_is_a_normal_end(state, args):
    extra = [] if args[0] in ("actions", "schema") else ["--state-dir", "state"]
    proc = subprocess.Popen([sys.executable, "-m", "engine", *args, *extra], cwd=state,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0 and err == ""


def test_a_run_into_head_finishes_and_exits_with_its_own_status(state):
    script = (f"{sys.executable} -m engine run loop.yaml --state-dir state --run-id piped "
              "2>err.txt | head -2 > /dev/null; echo ${PIPESTATUS[0]}")
    done = subprocess.run(["bash", "-c", script], cwd=state, env=cli_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == "0" and (state / "err.txt").read_text() == ""
    shown = runbook_cli("show", "piped", "--state-dir", "state", cwd=state).stdout
    assert shown.startswith("run piped: Loop — completed")
