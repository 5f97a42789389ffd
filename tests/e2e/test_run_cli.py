"""`runbook run` as a real subprocess: console output, JSON events, exit codes,
Ctrl-C, timeouts of whole process trees, -e, and what --help/validate import."""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time

from helpers.run import (FIXTURES, cli_env, journal_lines, pid_alive, runbook_cli,
                         start_cli, wait_gone, write_runbook)

ANSI = re.compile(r"\x1b\[")


def test_console_prints_one_line_per_step_with_status_elapsed_and_rto_clock(tmp_path):
    shutil.copy(FIXTURES / "console.yaml", tmp_path)
    done = runbook_cli("run", "console.yaml", "-e", "region=eu-west-1", "--state-dir", "state",
                       cwd=tmp_path)
    assert done.rc == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Running 'Console statuses' — run ")
    assert "by tester, RTO 5m00s" in lines[0]
    step_lines = {line.split()[0]: line for line in lines[1:5]}
    assert step_lines.keys() == {"changed", "ok", "skipped", "ignored"}
    assert "Print the region" in step_lines["changed"]
    assert "Check the region" in step_lines["ok"]
    assert "Only in production — condition false: environment == 'production'" in step_lines["skipped"]
    assert "Allowed to fail — exited with rc=7: broken" in step_lines["ignored"]
    for status in ("changed", "ok", "ignored"):
        assert re.search(r"\d+\.\ds \[\d+\.\ds of RTO 5m00s\]$", step_lines[status]), step_lines[status]
    recap = next(line for line in lines if line.startswith("Recap:"))
    assert re.match(r"Recap: COMPLETED — changed=1, ignored=1, ok=1, skipped=1 — \d+\.\ds of RTO "
                    r"5m00s \(run \S+\)$", recap), recap
    assert not ANSI.search(done.output), "no colour codes when stdout is not a terminal"


def test_a_failed_step_prints_failed_and_exits_1(tmp_path):
    write_runbook(tmp_path, """
        name: Broken
        steps:
          - name: Restore
            command: [sh, -c, "echo 'pg_restore: could not connect' >&2; exit 1"]
          - name: Never reached
            command: [touch, never]
    """)
    done = runbook_cli("run", "runbook.yaml", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 1
    assert re.search(r"^failed\s+Restore — exited with rc=1: pg_restore: could not connect",
                     done.stdout, re.M)
    assert "Recap: FAILED — failed=1" in done.stdout
    assert not (tmp_path / "never").exists()
    assert journal_lines(tmp_path / "state")[-1]["type"] == "run.failed"


def test_output_json_prints_one_parsable_event_per_line(tmp_path):
    shutil.copy(FIXTURES / "console.yaml", tmp_path)
    done = runbook_cli("run", "console.yaml", "-e", "region=eu", "--state-dir", "state",
                       "--output", "json", cwd=tmp_path)
    assert done.rc == 0, done.stderr
    events = done.events()  # every line must parse
    types = [e["type"] for e in events]
    assert types[0] == "run.started" and types[-1] == "run.completed"
    assert {"step.started", "step.succeeded", "step.skipped", "step.failed"} <= set(types)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events == journal_lines(tmp_path / "state")  # stdout shows exactly the journal
    succeeded = next(e for e in events if e["type"] == "step.succeeded")
    assert succeeded["step"]["name"] == "Print the region"
    assert succeeded["data"]["value"]["stdout"] == "eu"


def test_missing_required_input_exits_2_before_anything_runs(tmp_path):
    write_runbook(tmp_path, """
        name: Needs input
        inputs:
          backup_file: {type: string, required: true, description: Dump to restore}
        steps:
          - {name: First, command: [touch, started]}
          - {name: Use it, command: [echo, "{{ backup_file }}"]}
    """)
    done = runbook_cli("run", "runbook.yaml", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 2
    assert "missing required input 'backup_file'" in done.stderr
    assert "-e backup_file=VALUE" in done.stderr
    assert not (tmp_path / "started").exists()
    assert not list(tmp_path.rglob("journal.jsonl")), "no run may be created"


def test_bad_input_choice_exits_2(tmp_path):
    write_runbook(tmp_path, """
        name: Choice
        inputs:
          mode: {type: string, choices: [failover, failback], required: true}
        steps:
          - {command: [echo, "{{ mode }}"]}
    """)
    done = runbook_cli("run", "runbook.yaml", "-e", "mode=sideways", "--state-dir", "state",
                       cwd=tmp_path)
    assert done.rc == 2
    assert "'sideways' is not one of ['failover', 'failback']" in done.stderr


def test_extra_vars_inline_and_from_a_file_later_ones_win(tmp_path):
    write_runbook(tmp_path, """
        name: Extra vars
        vars: {release: from-runbook}
        steps:
          - name: Show
            debug: {msg: "{{ region }}/{{ replicas + 1 }}/{{ release }}"}
    """)
    vars_file = FIXTURES / "vars.yaml"
    done = runbook_cli("run", "runbook.yaml", "-e", f"@{vars_file}", "--state-dir", "state",
                       "--output", "json", cwd=tmp_path)
    assert done.rc == 0, done.stderr
    shown = [e for e in done.events() if e["type"] == "step.succeeded"][0]["data"]["value"]["msg"]
    assert shown == "eu-west-1/4/from-file"
    done = runbook_cli("run", "runbook.yaml", "-e", f"@{vars_file}", "-e", "release=inline",
                       "--state-dir", "state", "--output", "json", cwd=tmp_path)
    shown = [e for e in done.events() if e["type"] == "step.succeeded"][0]["data"]["value"]["msg"]
    assert shown == "eu-west-1/4/inline"


def test_variable_precedence_through_the_cli(tmp_path):
    (tmp_path / "inventory.yaml").write_text("vars: {who: inventory, level: inventory, tier: inventory}\n")
    write_runbook(tmp_path, """
        name: Precedence
        vars: {level: runbook, tier: runbook}
        steps:
          - {name: Fact, set_fact: {tier: fact}}
          - {name: Show, debug: {msg: "{{ who }} {{ level }} {{ tier }}"}}
    """)
    done = runbook_cli("run", "runbook.yaml", "-i", "inventory.yaml", "--state-dir", "state",
                       "--output", "json", cwd=tmp_path)
    shown = [e for e in done.events() if e["type"] == "step.succeeded"][-1]["data"]["value"]["msg"]
    assert shown == "inventory runbook fact"
    done = runbook_cli("run", "runbook.yaml", "-i", "inventory.yaml", "-e", "tier=extra",
                       "--state-dir", "state", "--output", "json", cwd=tmp_path)
    shown = [e for e in done.events() if e["type"] == "step.succeeded"][-1]["data"]["value"]["msg"]
    assert shown == "inventory runbook extra"


def test_skip_tags_and_start_at_from_the_command_line(tmp_path):
    write_runbook(tmp_path, """
        name: Selection
        steps:
          - {id: stop-app, command: [touch, stop-app]}
          - {id: restore, command: [touch, restore], tags: [db]}
          - {id: notify, command: [touch, notify], tags: [comms]}
          - {id: start-app, command: [touch, start-app]}
    """)
    done = runbook_cli("run", "runbook.yaml", "--start-at", "restore", "--skip-tags", "comms",
                       "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 0, done.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == "") == ["restore", "start-app",
                                                                         "state"]
    done = runbook_cli("run", "runbook.yaml", "--start-at", "restor", "--state-dir", "state",
                       cwd=tmp_path)
    assert done.rc == 2 and "did you mean 'restore'" in done.stderr


def test_sandbox_escape_fails_the_step_with_a_clear_error(tmp_path):
    write_runbook(tmp_path, """
        name: Sandbox
        steps:
          - name: Escape
            command: [echo, "{{ ''.__class__.__mro__ }}"]
    """)
    done = runbook_cli("run", "runbook.yaml", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 1
    assert "refused by the template sandbox" in done.stdout
    assert "__class__" in done.stdout
    assert "<class" not in done.stdout


def test_undefined_value_at_run_time_names_the_variable_and_the_step_location(tmp_path):
    write_runbook(tmp_path, """
        name: Undefined
        steps:
          - name: Query
            command: [echo, '{"rows": 1}']
            register: out
          - name: Use a key that is not there
            command: [echo, "{{ out.nonexistent_key }}"]
    """)
    done = runbook_cli("run", "runbook.yaml", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 1
    failed = next(line for line in done.stdout.splitlines() if line.startswith("failed"))
    assert "runbook.yaml:6:5" in failed  # the step "Use a key that is not there"
    assert "out.nonexistent_key" in failed


def test_timeout_kills_the_whole_process_tree(tmp_path):
    write_runbook(tmp_path, """
        name: Timeout
        steps:
          - name: Hangs with a grandchild
            shell: "sleep 30 & echo $! > grandchild.pid; echo $$ > shell.pid; wait"
            timeout: 1
    """)
    start = time.monotonic()
    done = runbook_cli("run", "runbook.yaml", "--state-dir", "state", cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert done.rc == 1
    assert "timed out" in done.stdout
    assert elapsed < 6, f"a 1s timeout took {elapsed:.1f}s"
    for name in ("shell.pid", "grandchild.pid"):
        pid = int((tmp_path / name).read_text())
        assert wait_gone(pid), f"{name} {pid} survived the timeout"


def test_timeout_kills_a_background_child_that_outlives_its_shell(tmp_path):
    # The shell exits at once; its background sleep keeps the step's output pipe open.
    write_runbook(tmp_path, """
        name: Orphan
        steps:
          - name: Leaves a child behind
            shell: "sleep 30 & echo $! > orphan.pid"
            timeout: 1
    """)
    start = time.monotonic()
    done = runbook_cli("run", "runbook.yaml", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 1
    assert time.monotonic() - start < 6
    assert wait_gone(int((tmp_path / "orphan.pid").read_text()))


def test_sigint_exits_130_and_stops_the_running_command(tmp_path):
    write_runbook(tmp_path, """
        name: Long
        steps:
          - name: Sleep long
            command: [sh, -c, "echo $$ > sleep.pid; exec sleep 30"]
          - name: Never
            command: [touch, never]
    """)
    process = start_cli("run", "runbook.yaml", "--state-dir", "state", cwd=tmp_path)
    pid_file = tmp_path / "sleep.pid"
    deadline = time.monotonic() + 10
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.02)
    sleep_pid = int(pid_file.read_text())
    assert pid_alive(sleep_pid)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 130, stdout + stderr
    assert wait_gone(sleep_pid), "the sleep survived Ctrl-C"
    assert not (tmp_path / "never").exists()
    assert "INTERRUPTED" in stdout
    assert journal_lines(tmp_path / "state")[-1]["type"] == "run.interrupted"


HEAVY = ("boto3", "botocore", "kubernetes", "psycopg")


def test_help_and_validate_do_not_import_heavy_client_libraries(tmp_path):
    write_runbook(tmp_path, """
        name: Uses every family
        inputs: {dsn: {type: string, default: "postgresql://localhost/x"}}
        steps:
          - {name: Rows, postgres.query: {dsn: "{{ dsn }}", sql: "SELECT 1"}}
          - {name: Health, http.check: {url: "http://127.0.0.1:1/"}}
          - {name: Sum, file.checksum: {path: /etc/hostname}}
    """)
    probe = f"""
import sys
from click.testing import CliRunner
from engine.cli.app import cli
runner = CliRunner()
assert runner.invoke(cli, ["--help"]).exit_code == 0
result = runner.invoke(cli, ["validate", {str(tmp_path / 'runbook.yaml')!r}])
assert result.exit_code == 0, result.output
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print("loaded:", loaded)
assert not loaded, loaded
"""
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "loaded: []" in done.stdout
    # and the real console script path, measured by the interpreter itself
    timed = subprocess.run([sys.executable, "-X", "importtime", "-m", "engine", "--help"],
                           cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60)
    assert timed.returncode == 0
    imported = {line.split("|")[-1].strip().split(".")[0] for line in timed.stderr.splitlines()
                if line.startswith("import time:")}
    assert "click" in imported  # the measurement works
    assert not imported & set(HEAVY)
