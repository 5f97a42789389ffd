"""The console at 3 a.m.: the live "running" line on a terminal (pseudo-terminal), one plain
line per 10 s in a pipe, colours, step mode's arguments as wrapped YAML, ``--output json``
untouched."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pexpect

from helpers.run import cli_env, runbook_cli, write_runbook

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

SLOW = """\
name: Slow
rto: 1m
steps:
  - name: Quick
    command: [echo, hi]
  - name: Long wait
    command: [sh, -c, "sleep {seconds}"]
  - name: Flaky
    command: [sh, -c, "sleep 0.7; exit 1"]
    retries: 2
    delay: 1
    ignore_errors: true
"""


def spawn(tmp: Path, *args: str, columns: int = 120) -> pexpect.spawn:
    env = cli_env({"COLUMNS": str(columns), "TERM": "xterm-256color"})
    return pexpect.spawn(sys.executable, ["-m", "engine", *args], cwd=str(tmp), env=env,
                         encoding="utf-8", timeout=60, dimensions=(40, columns))


def test_a_long_step_shows_a_live_line_with_retries_and_the_rto_clock(tmp_path):
    write_runbook(tmp_path, SLOW.format(seconds=2.5), "slow.yaml")
    child = spawn(tmp_path, "run", "slow.yaml", "--state-dir", "state")
    child.expect(pexpect.EOF)
    raw = child.before
    text = ANSI.sub("", raw)
    assert re.search(r"running +Long wait — [12]\.\ds so far \[[0-9.]+s of RTO 1m00s\]", text)
    assert re.search(r"running +Flaky — [0-9.]+s so far, 1 retry", text)
    assert re.search(r"running +Flaky — [0-9.]+s so far, 2 retries", text)
    assert re.search(r"changed +Long wait +2\.\ds", text)
    assert "\x1b[33mchanged" in raw and "\x1b[1;34mrunning" in raw   # colours on a terminal
    assert re.search(r"\x1b\[1;32mRecap: COMPLETED", raw)


def test_a_pipe_gets_one_still_running_line_per_ten_seconds(tmp_path):
    write_runbook(tmp_path, SLOW.format(seconds=11), "slow.yaml")
    done = runbook_cli("run", "slow.yaml", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 0, done.output
    running = [line for line in done.stdout.splitlines() if line.startswith("running")]
    assert len(running) == 1, done.stdout
    assert re.fullmatch(r"running +Long wait — 1\d(\.\d)?s so far  \[1\d(\.\d)?s of RTO 1m00s\]",
                        running[0])
    assert not ANSI.search(done.stdout)


def test_short_steps_in_a_pipe_print_no_extra_line(tmp_path):
    write_runbook(tmp_path, SLOW.format(seconds=2), "slow.yaml")
    done = runbook_cli("run", "slow.yaml", "--state-dir", "state", cwd=tmp_path)
    assert [line.split()[0] for line in done.stdout.splitlines() if line.strip()][:6] == [
        "Running", "changed", "changed", "retry", "retry", "ignored"]


def test_output_json_stays_one_event_per_line(tmp_path):
    write_runbook(tmp_path, SLOW.format(seconds=1.5), "slow.yaml")
    done = runbook_cli("run", "slow.yaml", "--state-dir", "state", "--output", "json",
                       cwd=tmp_path)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["type"] == "run.started" and events[-1]["type"] == "run.completed"


def test_step_mode_shows_masked_yaml_arguments_wrapped_at_word_boundaries(tmp_path):
    sql = ("UPDATE accounts SET status = 'restored', restored_by = 'runbook' WHERE "
           "region = 'eu-west-1' AND restored_at IS NULL AND tenant IN (SELECT id FROM tenants)")
    write_runbook(tmp_path, f"""\
name: Guided
steps:
  - name: Fix rows
    command: [sh, -c, "echo {{{{ secrets.token }}}} >/dev/null; echo \\"{sql}\\""]
""", "guided.yaml")
    (tmp_path / "inv.yaml").write_text("secrets:\n  token: {env: GUIDED_TOKEN}\n")
    env = cli_env({"COLUMNS": "72", "TERM": "xterm-256color",
                   "GUIDED_TOKEN": "tok-hunter2-very-secret"})
    child = pexpect.spawn(sys.executable, ["-m", "engine", "run", "guided.yaml", "-i", "inv.yaml",
                                           "--step", "--state-dir", "state"],
                          cwd=str(tmp_path), env=env, encoding="utf-8", timeout=30,
                          dimensions=(40, 72))
    child.expect_exact("Run this step?")
    header = ANSI.sub("", child.before)
    child.sendline("a")
    child.expect(pexpect.EOF)
    lines = header.replace("\r", "").splitlines()
    start = lines.index("  action:   command")
    args = lines[start + 1:next(i for i, l in enumerate(lines) if l.startswith("  plan:"))]
    assert args[0].strip() == "- sh" and args[1].strip() == "- -c"
    assert len(args) > 3 and all(len(line) <= 72 for line in args)
    words = set(" ".join(a.strip() for a in args[2:]).split())
    assert {"region", "'eu-west-1'", "restored_at", "tenants)\\\"\""} & words
    assert "tok-hunter2-very-secret" not in child.before + header
    assert "********" in header or "***" in header
    assert "{'" not in header and "['sh'" not in header   # no Python reprs any more
