"""Core actions against real processes, sockets and files: command, shell,
assert, fail, set_fact, pause, wait_for."""
from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from helpers.run import run_inprocess

from engine.actions import get_action  # noqa: E402
from engine.actions.base import ActionError, Context  # noqa: E402


def run_action(name: str, args, *, deadline: float | None = None, dry_run: bool = False):
    ctx = Context(dry_run=dry_run)
    ctx.bind_step(deadline, lambda expr: False)
    return get_action(name)().run(args, ctx)


# --- command ---

def test_command_argv_list_returns_rc_stdout_stderr():
    result = run_action("command", ["sh", "-c", "echo out; echo err >&2"])
    assert result.ok and result.changed
    assert (result.data["rc"], result.data["stdout"], result.data["stderr"]) == (0, "out", "err")


def test_command_string_is_split_like_a_shell_but_never_run_by_one(tmp_path):
    victim = tmp_path / "x"
    result = run_action("command", f"echo $HOME; touch {victim}")
    assert result.data["stdout"] == f"$HOME; touch {victim}"
    assert not victim.exists()


def test_command_string_honours_shell_quoting():
    result = run_action("command", "printf '%s|' 'a b' \"c d\" e")
    assert result.data["stdout"] == "a b|c d|e|"


def test_rendered_values_are_never_reparsed_by_a_shell(tmp_path):
    victim = tmp_path / "pwned"
    ran = run_inprocess(tmp_path, """
        name: injection
        steps:
          - {id: listed, command: [echo, "{{ evil }}"], register: a}
          - {id: split, command: "echo {{ evil }}", register: b}
    """, extra=[f"evil=$(touch {victim}); touch {victim}"])
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.value("listed")["stdout"] == f"$(touch {victim}); touch {victim}"
    assert ran.value("split")["stdout"] == f"$(touch {victim}); touch {victim}"
    assert not victim.exists()


def test_command_mapping_form_with_chdir_env_and_stdin(tmp_path):
    result = run_action("command", {
        "argv": ["sh", "-c", 'pwd; echo "$GREETING"; cat'],
        "chdir": str(tmp_path), "env": {"GREETING": "hi", "N": 3}, "stdin": "from stdin\n"})
    assert result.data["stdout"].splitlines() == [str(tmp_path), "hi", "from stdin"]


def test_command_mapping_argv_may_be_a_string():
    result = run_action("command", {"argv": "echo 'one two'"})
    assert result.data["stdout"] == "one two"


def test_command_nonzero_rc_fails_with_the_last_line_of_stderr():
    result = run_action("command", ["sh", "-c", "echo first >&2; echo disk full >&2; exit 3"])
    assert not result.ok
    assert result.data["rc"] == 3
    assert result.message == "exited with rc=3: disk full"


def test_command_ok_rc_accepts_other_return_codes():
    result = run_action("command", {"argv": ["sh", "-c", "exit 1"], "ok_rc": [0, 1]})
    assert result.ok and result.data["rc"] == 1


def test_command_not_found_is_a_clear_error():
    with pytest.raises(ActionError, match="command not found: no-such-program-xyz"):
        run_action("command", ["no-such-program-xyz"])


def test_command_bad_chdir_is_a_clear_error(tmp_path):
    with pytest.raises(ActionError, match="no-such-dir"):
        run_action("command", {"argv": ["true"], "chdir": str(tmp_path / "no-such-dir")})


def test_command_deadline_kills_the_process():
    start = time.monotonic()
    with pytest.raises(ActionError, match="timed out"):
        run_action("command", ["sleep", "10"], deadline=time.monotonic() + 0.3)
    assert time.monotonic() - start < 3


def test_command_plan_shows_the_quoted_argv_without_running_it(tmp_path):
    victim = tmp_path / "x"
    plan = get_action("command")().plan({"argv": ["touch", str(victim)], "chdir": "/tmp"},
                                        Context(dry_run=True))
    assert plan == f"run touch {victim} (in /tmp)"
    assert not victim.exists()


# --- shell ---

def test_shell_runs_pipes_through_bin_sh():
    result = run_action("shell", "echo one two three | wc -w | tr -d ' '")
    assert result.ok and result.data["stdout"] == "3"


def test_shell_redirection_and_chdir(tmp_path):
    result = run_action("shell", {"cmd": "echo hi > out.txt && cat out.txt", "chdir": str(tmp_path)})
    assert result.data["stdout"] == "hi"
    assert (tmp_path / "out.txt").read_text() == "hi\n"


def test_shell_nonzero_exit_fails_unless_ok_rc():
    assert not run_action("shell", "exit 2").ok
    assert run_action("shell", {"cmd": "exit 2", "ok_rc": [2]}).ok


# --- assert / fail / set_fact (need a step scope: run them in a runbook) ---

def test_assert_passes_and_fails_with_its_message(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: assert
        vars: {replicas: 3}
        steps:
          - {id: good, assert: {that: ["replicas > 2", "replicas < 5"]}}
          - {id: single, assert: {that: "replicas == 3"}}
          - id: bad
            assert: {that: ["replicas > 2", "replicas > 4"], message: need more than 4 replicas}
    """)
    assert ran.end("good").type == "step.succeeded"
    assert ran.end("single").type == "step.succeeded"
    assert ran.end("bad").type == "step.failed"
    assert ran.end("bad").data["message"] == "need more than 4 replicas"
    assert ran.status == "failed"


def test_assert_without_message_names_the_failed_expression(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: assert
        steps:
          - {id: bad, assert: {that: ["1 == 1", "2 == 3"]}}
    """)
    assert ran.end("bad").data["message"] == "assertion failed: 2 == 3"


def test_fail_stops_the_run_with_its_rendered_message(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: fail
        vars: {lag: 42}
        steps:
          - {id: guard, fail: {message: "replication lag {{ lag }}s is too high"}, when: lag > 30}
          - {id: never, debug: {msg: unreachable}}
    """)
    assert ran.status == "failed"
    assert ran.end("guard").data["message"] == "replication lag 42s is too high"
    assert not ran.of("never")


def test_set_fact_values_are_rendered_with_native_types(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: set_fact
        steps:
          - {id: facts, set_fact: {hosts: "{{ ['a', 'b'] }}", n: "{{ 2 * 21 }}"}}
          - {id: check, assert: {that: ["hosts | length == 2", "n == 42"]}}
    """)
    assert ran.status == "completed", ran.handle.outcome.message


# --- pause ---

def test_pause_waits_for_its_duration():
    start = time.monotonic()
    result = run_action("pause", {"duration": "300ms"})
    assert result.ok and 0.3 <= time.monotonic() - start < 1.5


def test_pause_does_not_wait_in_a_dry_run():
    start = time.monotonic()
    result = run_action("pause", {"duration": "1h"}, dry_run=True)
    assert result.ok and time.monotonic() - start < 0.5


# --- wait_for ---

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_wait_for_port_returns_once_a_real_socket_listens():
    port = _free_port()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def listen_later():
        time.sleep(0.3)
        server.bind(("127.0.0.1", port))
        server.listen()

    thread = threading.Thread(target=listen_later)
    thread.start()
    try:
        start = time.monotonic()
        result = run_action("wait_for", {"port": port, "timeout": 5, "sleep": 0.05})
        assert result.ok and time.monotonic() - start >= 0.25
    finally:
        thread.join()
        server.close()


def test_wait_for_port_times_out_when_nothing_listens():
    port = _free_port()
    start = time.monotonic()
    with pytest.raises(ActionError, match=f"127.0.0.1:{port} was not up after 0.3s"):
        run_action("wait_for", {"port": port, "timeout": 0.3, "sleep": 0.05})
    assert time.monotonic() - start < 2


def test_wait_for_port_stopped_succeeds_when_the_port_is_closed():
    result = run_action("wait_for", {"port": _free_port(), "state": "stopped", "timeout": 1})
    assert result.ok


def test_wait_for_path_present_and_absent(tmp_path):
    target = tmp_path / "ready.flag"
    timer = threading.Timer(0.2, target.touch)
    timer.start()
    try:
        assert run_action("wait_for", {"path": str(target), "timeout": 5, "sleep": 0.05}).ok
    finally:
        timer.join()
    timer = threading.Timer(0.2, os.remove, [target])
    timer.start()
    try:
        assert run_action("wait_for", {"path": str(target), "state": "absent",
                                       "timeout": 5, "sleep": 0.05}).ok
    finally:
        timer.join()
    assert not target.exists()


def test_wait_for_respects_the_step_deadline(tmp_path):
    start = time.monotonic()
    with pytest.raises(ActionError):
        run_action("wait_for", {"path": str(tmp_path / "never"), "timeout": 60, "sleep": 0.05},
                   deadline=time.monotonic() + 0.3)
    assert time.monotonic() - start < 2
