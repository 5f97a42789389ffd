"""Secrets from the environment or a file never reach the console, the JSON
events or the journal; a missing secret stops the run before its first step;
``no_log`` hides a step's arguments and results everywhere."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers.run import journal_lines, runbook_cli, write_runbook

SECRET = "Pa55-w0rd-7f3a9c"

def _every_byte_under(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


@pytest.fixture
def secret_runbook(tmp_path):
    (tmp_path / "inventory.yaml").write_text("secrets:\n  db_password: {env: DB_PASSWORD}\n")
    write_runbook(tmp_path, """
        name: Uses a secret
        steps:
          - name: Connect
            command: [sh, -c, 'echo "connecting with $1 to db"', sh,
                      "--password={{ secrets.db_password }}"]
            register: conn
          - name: Echo it back
            debug: {msg: "got {{ conn.stdout }}"}
          - name: Fail with it
            command:
              argv: [sh, -c, 'echo "auth failed for user:$PGPASSWORD@db" >&2; exit 1']
              env: {PGPASSWORD: "{{ secrets.db_password }}"}
            ignore_errors: true
    """)
    return tmp_path


@pytest.mark.parametrize("output", ["text", "json"])
def test_secret_from_env_is_masked_in_output_and_journal(secret_runbook, output):
    done = runbook_cli("run", "runbook.yaml", "-i", "inventory.yaml", "--state-dir", "state",
                       "--output", output, cwd=secret_runbook, env={"DB_PASSWORD": SECRET})
    assert done.rc == 0, done.output
    assert SECRET not in done.stdout and SECRET not in done.stderr
    assert SECRET.encode() not in _every_byte_under(secret_runbook / "state")
    if output == "json":
        events = done.events()
        value = next(e for e in events if e["type"] == "step.succeeded")["data"]["value"]
        assert value["stdout"] == "connecting with --password=*** to db"
        started = next(e for e in events if e["type"] == "step.started")
        assert started["data"]["args"][-1] == "--password=***"
    else:
        assert "auth failed for user:***@db" in done.stdout
    journal = journal_lines(secret_runbook / "state")
    failed = next(e for e in journal if e["type"] == "step.failed")
    assert failed["data"]["message"] == "exited with rc=1: auth failed for user:***@db"


def test_the_step_still_receives_the_real_secret(secret_runbook):
    write_runbook(secret_runbook, """
        name: Secret reaches the command
        steps:
          - name: Write it where only the test looks
            command:
              argv: [sh, -c, 'printf %s "$PGPASSWORD" > received']
              env: {PGPASSWORD: "{{ secrets.db_password }}"}
    """)
    done = runbook_cli("run", "runbook.yaml", "-i", "inventory.yaml", "--state-dir", "state",
                       cwd=secret_runbook, env={"DB_PASSWORD": SECRET})
    assert done.rc == 0, done.output
    assert (secret_runbook / "received").read_text() == SECRET


def test_secret_from_a_file_is_read_stripped_and_masked(tmp_path):
    (tmp_path / "db.secret").write_text(SECRET + "\n")
    (tmp_path / "inventory.yaml").write_text(
        f"secrets:\n  db_password: {{file: {tmp_path / 'db.secret'}}}\n")
    write_runbook(tmp_path, """
        name: File secret
        steps:
          - name: Use it
            command: [echo, "dsn=postgresql://app:{{ secrets.db_password }}@db/app"]
            register: out
          - name: It is the stripped file content
            assert: {that: "out.stdout.endswith(secrets.db_password ~ '@db/app')"}
    """)
    done = runbook_cli("run", "runbook.yaml", "-i", "inventory.yaml", "--state-dir", "state",
                       cwd=tmp_path)
    assert done.rc == 0, done.output
    assert SECRET not in done.stdout + done.stderr
    assert SECRET.encode() not in _every_byte_under(tmp_path / "state")
    value = next(e for e in journal_lines(tmp_path / "state")
                 if e["type"] == "step.succeeded")["data"]["value"]
    assert value["stdout"] == "dsn=postgresql://app:***@db/app"


def test_missing_secret_env_var_exits_2_before_the_first_step(secret_runbook):
    write_runbook(secret_runbook, """
        name: Needs a secret
        steps:
          - {name: First, command: [touch, started]}
          - {name: Use, command: [echo, "{{ secrets.db_password }}"]}
    """)
    done = runbook_cli("run", "runbook.yaml", "-i", "inventory.yaml", "--state-dir", "state",
                       cwd=secret_runbook, env={"DB_PASSWORD": None})
    assert done.rc == 2, done.output
    assert "secret 'db_password'" in done.stderr and "DB_PASSWORD is not set" in done.stderr
    assert not (secret_runbook / "started").exists()
    assert not list(secret_runbook.rglob("journal.jsonl"))


def test_missing_secret_file_exits_2(tmp_path):
    (tmp_path / "inventory.yaml").write_text("secrets:\n  token: {file: /nonexistent/token}\n")
    write_runbook(tmp_path, """
        name: Needs a file secret
        steps:
          - {command: [echo, "{{ secrets.token }}"]}
    """)
    done = runbook_cli("run", "runbook.yaml", "-i", "inventory.yaml", "--state-dir", "state",
                       cwd=tmp_path)
    assert done.rc == 2
    assert "secret 'token': cannot read file /nonexistent/token" in done.stderr


def test_secret_input_is_masked(tmp_path):
    write_runbook(tmp_path, """
        name: Secret input
        inputs:
          api_token: {type: string, required: true, secret: true}
        steps:
          - {name: Call, command: [echo, "Authorization: Bearer {{ api_token }}"]}
    """)
    done = runbook_cli("run", "runbook.yaml", "-e", f"api_token={SECRET}", "--state-dir", "state",
                       "--output", "json", cwd=tmp_path)
    assert done.rc == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert SECRET.encode() not in _every_byte_under(tmp_path / "state")


# --- no_log ---

NO_LOG = """
    name: No log
    steps:
      - name: Read the token
        command: [cat, token.txt]
        mutates: false  # runs in a dry-run too: the next step's plan would show the token
        register: token
        no_log: true
      - name: Use the token
        command: [sh, -c, 'echo "used $1"', sh, "{{ token.stdout }}"]
        register: used
        no_log: true
      - name: Prove it ran
        assert: {that: "used.stdout.startswith('used ')"}
"""


@pytest.mark.parametrize("mode", [[], ["--output", "json"], ["--dry-run"]])
def test_no_log_hides_arguments_and_results_everywhere(tmp_path, mode):
    # The value is only known at run time: it is in a file, not in the runbook or on the command line.
    (tmp_path / "token.txt").write_text("tok-" + "9d1e" * 4 + "\n")
    hidden = "tok-" + "9d1e" * 4
    write_runbook(tmp_path, NO_LOG)
    done = runbook_cli("run", "runbook.yaml", "--state-dir", "state", *mode, cwd=tmp_path)
    assert done.rc == 0, done.output
    assert hidden not in done.stdout + done.stderr
    assert hidden.encode() not in _every_byte_under(tmp_path / "state")
    journal = journal_lines(tmp_path / "state")
    if "--dry-run" in mode:
        planned = {e["step"]["id"]: e["data"] for e in journal if e["type"] == "step.planned"}
        assert planned["use-the-token"]["plan"] == "command <hidden: no_log>"
        assert planned["use-the-token"]["args"] == "<hidden: no_log>"
    else:
        ends = [e for e in journal if e["type"] == "step.succeeded" and e["step"]["id"] != "prove-it-ran"]
        assert len(ends) == 2
        assert all(e["data"]["value"] == "<hidden: no_log>" for e in ends)
        started = [e for e in journal if e["type"] == "step.started" and e["step"]["id"] == "use-the-token"]
        assert started[0]["data"]["args"] == "<hidden: no_log>"


def test_no_log_hides_the_failure_output_of_a_step(tmp_path):
    (tmp_path / "token.txt").write_text("tok-" + "77ab" * 4 + "\n")
    hidden = "tok-" + "77ab" * 4
    write_runbook(tmp_path, """
        name: No log failure
        steps:
          - name: Read the token
            command: [cat, token.txt]
            register: token
            no_log: true
          - name: Rejected
            command: [sh, -c, 'echo "token $1 rejected" >&2; exit 1', sh, "{{ token.stdout }}"]
            no_log: true
    """)
    done = runbook_cli("run", "runbook.yaml", "--state-dir", "state", cwd=tmp_path)
    assert done.rc == 1
    assert hidden not in done.stdout + done.stderr
    assert hidden.encode() not in _every_byte_under(tmp_path / "state")
