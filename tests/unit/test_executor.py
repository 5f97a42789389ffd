"""The executor's keywords with Ansible semantics, run in-process through
``engine.run.start.start_run`` (real subprocesses, real files, a real journal)."""
from __future__ import annotations

import time

import pytest

from helpers.run import run_inprocess

from engine.errors import UsageError  # noqa: E402


# --- when ---

def test_when_false_skips_the_step_and_registers_skipped(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: when
        vars: {env: staging}
        steps:
          - name: Only in production
            id: prod
            command: [touch, "{{ marker }}"]
            when: env == 'production'
            register: prod
          - name: Record skip
            id: check
            assert: {that: ["prod.skipped", "not prod.changed"]}
    """, extra=[f"marker={tmp_path / 'marker'}"])
    assert ran.status == "completed"
    assert ran.end("prod").type == "step.skipped"
    assert "env == 'production'" in ran.end("prod").data["reason"]
    assert not (tmp_path / "marker").exists()


def test_when_list_needs_every_condition(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: when list
        vars: {a: 1, b: 2}
        steps:
          - {id: both, debug: {msg: yes}, when: ["a == 1", "b == 2"]}
          - {id: one-false, debug: {msg: no}, when: ["a == 1", "b == 3"]}
    """)
    assert ran.end("both").type == "step.succeeded"
    assert ran.end("one-false").type == "step.skipped"


# --- loop ---

def test_loop_with_loop_var_registers_results_in_order(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: loop
        steps:
          - id: greet
            command: [echo, "hello {{ who }}"]
            loop: [ann, bob, cy]
            loop_var: who
            register: greetings
          - id: check
            assert:
              that:
                - greetings.results | length == 3
                - greetings.results[1].stdout == 'hello bob'
                - greetings.results | map(attribute='rc') | list == [0, 0, 0]
                - greetings.changed
    """)
    assert ran.status == "completed", ran.handle.outcome.message
    assert [e.step["item"] for e in ran.of("greet", "step.succeeded")] == [0, 1, 2]


def test_loop_parallel_runs_iterations_concurrently(tmp_path):
    start = time.monotonic()
    ran = run_inprocess(tmp_path, """
        name: parallel loop
        steps:
          - id: nap
            command: [sleep, "0.5"]
            loop: [1, 2, 3, 4]
            parallel: 4
            register: naps
    """)
    elapsed = time.monotonic() - start
    assert ran.status == "completed"
    assert len(ran.of("nap", "step.succeeded")) == 4
    assert elapsed < 1.5, f"4 x sleep 0.5 with parallel: 4 took {elapsed:.2f}s"


def test_loop_without_parallel_runs_one_after_another(tmp_path):
    start = time.monotonic()
    run_inprocess(tmp_path, """
        name: serial loop
        steps:
          - {id: nap, command: [sleep, "0.2"], loop: [1, 2, 3]}
    """)
    assert time.monotonic() - start >= 0.6


# --- register ---

def test_register_exposes_standard_keys_and_action_data(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: register
        steps:
          - id: cmd
            command: [sh, -c, "echo out; echo err >&2; exit 3"]
            ignore_errors: true
            register: x
          - id: check
            assert:
              that:
                - not x.ok
                - x.failed
                - x.changed
                - not x.skipped
                - x.elapsed >= 0
                - "'rc=3' in x.message"
                - x.rc == 3
                - x.stdout == 'out'
                - x.stderr == 'err'
    """)
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.end("cmd").data["ignored"] is True


# --- retries / delay / until ---

COUNTER = """
    name: retries
    steps:
      - id: flaky
        shell: |
          n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}
          echo attempt $n
          [ $n -ge 3 ]
        retries: {retries}
        delay: 0.05
        register: flaky
"""


def test_retries_until_success_on_the_third_attempt(tmp_path):
    counter = tmp_path / "counter"
    ran = run_inprocess(tmp_path, COUNTER.format(counter=counter, retries=5))
    assert ran.status == "completed"
    assert counter.read_text().strip() == "3"
    assert len(ran.of("flaky", "step.retry")) == 2
    assert ran.value("flaky")["attempts"] == 3


def test_retries_exhausted_fails_the_step(tmp_path):
    counter = tmp_path / "counter"
    ran = run_inprocess(tmp_path, COUNTER.format(counter=counter, retries=1))
    assert ran.status == "failed"
    assert counter.read_text().strip() == "2"


def test_until_repeats_until_the_expression_holds(tmp_path):
    counter = tmp_path / "counter"
    ran = run_inprocess(tmp_path, f"""
        name: until
        steps:
          - id: count
            shell: "n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) | tee {counter}"
            register: c
            until: c.stdout | int >= 4
            retries: 10
            delay: 0.01
          - {{id: check, assert: {{that: "c.stdout | trim == '4'"}}}}
    """)
    assert ran.status == "completed", ran.handle.outcome.message
    assert counter.read_text().strip() == "4"


# --- timeout ---

def test_timeout_fails_a_slow_step(tmp_path):
    start = time.monotonic()
    ran = run_inprocess(tmp_path, """
        name: timeout
        steps:
          - {id: slow, command: [sleep, "10"], timeout: 0.5}
    """)
    assert ran.status == "failed"
    assert "timed out" in ran.end("slow").data["message"]
    assert time.monotonic() - start < 5


# --- ignore_errors ---

def test_ignore_errors_records_the_failure_and_goes_on(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: ignore
        steps:
          - {id: broken, command: ["false"], ignore_errors: true}
          - {id: next, debug: {msg: still here}}
    """)
    assert ran.status == "completed"
    assert ran.end("broken").type == "step.failed"
    assert ran.end("broken").data["ignored"] is True
    assert ran.end("next").type == "step.succeeded"


def test_a_failed_step_stops_the_run(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: stop
        steps:
          - {id: broken, command: ["false"]}
          - {id: never, debug: {msg: unreachable}}
    """)
    assert ran.status == "failed"
    assert ran.handle.outcome.failed_step == "broken"
    assert not ran.of("never")


# --- verify ---

def test_failed_verification_fails_the_step_with_its_message(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: verify
        steps:
          - id: echo
            command: [echo, "3"]
            register: out
            verify:
              - that: out.stdout | int > 5
                message: too few replicas
    """)
    assert ran.status == "failed"
    assert ran.of("echo", "verify.failed")
    assert ran.end("echo").data["message"] == "too few replicas"


def test_verify_with_retries_reprobes_a_read_only_step_until_it_holds(tmp_path):
    report = tmp_path / "report.txt"
    report.write_text("")
    ran = run_inprocess(tmp_path, f"""
        name: verify retries
        steps:
          - id: fill-later
            shell: "(sleep 0.4; echo done > {report}) >/dev/null 2>&1 &"
          - id: report-filled
            file.exists: {{path: "{report}", type: file}}
            register: seen
            verify:
              - that: seen.bytes > 0
                retries: 40
                delay: 0.05
    """)
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.value("report-filled")["bytes"] == 5
    assert ran.of("report-filled", "verify.passed")
    assert not ran.of("report-filled", "verify.failed")


def test_verify_with_retries_waits_for_a_file_to_appear(tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    ran = run_inprocess(tmp_path, f"""
        name: verify file appears
        steps:
          - id: drop-later
            shell: "(sleep 0.4; touch {spool}/ready.flag) >/dev/null 2>&1 &"
          - id: list-spool
            command: [ls, -1, "{spool}"]
            mutates: false
            register: listing
            verify:
              - that: "'ready.flag' in listing.stdout_lines"
                retries: 40
                delay: 0.05
    """)
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.value("list-spool")["stdout_lines"] == ["ready.flag"]


def test_verify_retries_give_up_with_the_verification_message(tmp_path):
    report = tmp_path / "report.txt"
    report.write_text("")
    start = time.monotonic()
    ran = run_inprocess(tmp_path, f"""
        name: verify gives up
        steps:
          - id: report-filled
            file.exists: {{path: "{report}"}}
            register: seen
            verify:
              - that: seen.bytes > 0
                message: the report stayed empty
                retries: 3
                delay: 0.1
    """)
    assert ran.status == "failed"
    assert ran.end("report-filled").data["message"] == "the report stayed empty"
    assert time.monotonic() - start >= 0.3


def test_verify_does_not_rerun_a_mutating_step(tmp_path):
    counter = tmp_path / "counter"
    ran = run_inprocess(tmp_path, f"""
        name: verify mutating
        steps:
          - id: bump
            shell: "echo x >> {counter}"
            verify:
              - that: "false"
                retries: 3
                delay: 0.01
    """)
    assert ran.status == "failed"
    assert counter.read_text() == "x\n"


# --- block / rescue / always ---

def test_rescue_sees_the_failure_and_always_runs(tmp_path):
    log = tmp_path / "log"
    ran = run_inprocess(tmp_path, f"""
        name: rescue
        steps:
          - name: Guarded
            block:
              - {{id: boom, command: [sh, -c, "exit 4"]}}
              - {{id: skipped-by-failure, command: [touch, "{tmp_path / 'never'}"]}}
            rescue:
              - id: handle
                shell: "echo 'rescued {{{{ failure.step }}}}: {{{{ failure.message }}}}' >> {log}"
            always:
              - {{id: cleanup, shell: "echo always >> {log}"}}
          - {{id: after, debug: {{msg: run goes on}}}}
    """)
    assert ran.status == "completed", ran.handle.outcome.message
    lines = log.read_text().splitlines()
    assert lines[0].startswith("rescued boom: ") and "rc=4" in lines[0]
    assert lines[1] == "always"
    assert not (tmp_path / "never").exists()
    assert ran.end("after").type == "step.succeeded"


def test_always_runs_after_an_unrescued_failure_and_the_run_fails(tmp_path):
    log = tmp_path / "log"
    ran = run_inprocess(tmp_path, f"""
        name: always
        steps:
          - block:
              - {{id: boom, fail: {{message: broken}}}}
            always:
              - {{id: cleanup, shell: "echo cleaned >> {log}"}}
          - {{id: never, debug: {{msg: unreachable}}}}
    """)
    assert ran.status == "failed"
    assert log.read_text() == "cleaned\n"
    assert not ran.of("never")


# --- parallel group ---

def test_parallel_group_runs_its_steps_concurrently(tmp_path):
    start = time.monotonic()
    ran = run_inprocess(tmp_path, """
        name: parallel
        steps:
          - name: Fan out
            parallel:
              - {id: a, command: [sleep, "0.5"], register: a}
              - {id: b, command: [sleep, "0.5"], register: b}
              - {id: c, command: [sleep, "0.5"], register: c}
          - {id: joined, assert: {that: ["a.ok and b.ok and c.ok"]}}
    """)
    elapsed = time.monotonic() - start
    assert ran.status == "completed", ran.handle.outcome.message
    assert elapsed < 1.2, f"3 x sleep 0.5 in parallel took {elapsed:.2f}s"


def test_a_failing_branch_fails_the_parallel_group(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: parallel failure
        steps:
          - parallel:
              - {id: good, command: ["true"]}
              - {id: bad, command: ["false"]}
          - {id: never, debug: {msg: unreachable}}
    """)
    assert ran.status == "failed"
    assert ran.end("good").type == "step.succeeded"
    assert not ran.of("never")


# --- tags / start-at ---

TAGGED = """
    name: tags
    steps:
      - {id: one, debug: {msg: one}, tags: [db]}
      - {id: two, debug: {msg: two}, tags: [app]}
      - {id: three, debug: {msg: three}, tags: [always]}
      - {id: four, debug: {msg: four}}
"""


def _ran_ids(ran) -> list[str]:
    return [e.step["id"] for e in ran.events if e.type == "step.succeeded"]


def test_tags_select_tagged_steps_and_always(tmp_path):
    ran = run_inprocess(tmp_path, TAGGED, tags={"db"})
    assert _ran_ids(ran) == ["one", "three"]


def test_skip_tags_excludes_tagged_steps(tmp_path):
    ran = run_inprocess(tmp_path, TAGGED, skip_tags={"db", "app"})
    assert _ran_ids(ran) == ["three", "four"]


def test_start_at_skips_every_step_before(tmp_path):
    ran = run_inprocess(tmp_path, TAGGED, start_at="three")
    assert _ran_ids(ran) == ["three", "four"]


def test_start_at_an_unknown_step_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="thre"):
        run_inprocess(tmp_path, TAGGED, start_at="thre")


# --- inputs and variables ---

INPUTS = """
    name: inputs
    inputs:
      name: {type: string, required: true}
      count: {type: integer, default: 2}
      ratio: {type: number, default: 0.5}
      enabled: {type: boolean, default: false}
      hosts: {type: list, default: [a]}
      limits: {type: object, default: {cpu: 1}}
      mode: {type: string, choices: [fast, safe], default: safe}
    steps:
      - id: show
        debug:
          msg: "{{ [name, count, ratio, enabled, hosts, limits, mode] | to_json }}"
"""


def test_inputs_are_converted_to_their_types(tmp_path):
    ran = run_inprocess(tmp_path, INPUTS, extra=[
        "name=db1", "count=7", "ratio=1.5", "enabled=true", "hosts=[x, y]",
        'limits={"cpu": 4}', "mode=fast"])
    assert ran.value("show")["msg"] == '["db1", 7, 1.5, true, ["x", "y"], {"cpu": 4}, "fast"]'


def test_input_defaults_apply(tmp_path):
    ran = run_inprocess(tmp_path, INPUTS, extra=["name=db1"])
    assert ran.value("show")["msg"] == '["db1", 2, 0.5, false, ["a"], {"cpu": 1}, "safe"]'


@pytest.mark.parametrize("extra, message", [
    ([], "missing required input 'name'"),
    (["name=x", "count=many"], "input 'count': expected integer"),
    (["name=x", "enabled=maybe"], "input 'enabled': expected boolean"),
    (["name=x", "mode=reckless"], "'reckless' is not one of ['fast', 'safe']"),
])
def test_bad_inputs_are_usage_errors_before_any_run_exists(tmp_path, extra, message):
    with pytest.raises(UsageError) as caught:
        run_inprocess(tmp_path, INPUTS, extra=extra)
    assert message in str(caught.value)
    assert not list(tmp_path.rglob("journal.jsonl")), "no run may be created"


def test_variable_precedence_inventory_vars_runbook_vars_inputs_facts_extra(tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("vars: {a: inv, b: inv, c: inv, d: inv, e: inv, f: inv}\n")
    ran = run_inprocess(tmp_path, """
        name: precedence
        inputs:
          c: {type: string}
          d: {type: string, default: input}
          e: {type: string, default: input}
        vars: {b: runbook, c: runbook, d: runbook, e: runbook}
        steps:
          - {id: facts, set_fact: {e: fact, f: fact}}
          - id: show
            debug: {msg: "{{ [a, b, c, d, e, f] | join(',') }}"}
    """, inventories=[inventory], extra=["f=extra"])
    # a: only the inventory; b: runbook vars beat inventory vars; c: an input
    # takes the inventory var of the same name; d, e: an input wins over vars;
    # e: set_fact wins over inputs; f: -e wins over set_fact.
    assert ran.value("show")["msg"] == "inv,runbook,inv,inv,fact,extra"


def test_extra_vars_beat_set_fact(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: extra wins
        vars: {level: runbook}
        steps:
          - {id: facts, set_fact: {level: fact}}
          - {id: show, debug: {msg: "{{ level }}"}}
    """, extra=["level=extra"])
    assert ran.value("show")["msg"] == "extra"


def test_set_fact_is_visible_to_later_steps(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: set_fact
        steps:
          - {id: facts, set_fact: {replicas: "{{ 1 + 2 }}", region: eu}}
          - {id: show, debug: {msg: "{{ region }}-{{ replicas * 2 }}"}}
    """)
    assert ran.value("show")["msg"] == "eu-6"


# --- sandbox and undefined values at run time ---

def test_sandbox_refuses_dunder_access_at_run_time(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: sandbox
        steps:
          - id: escape
            command: [echo, "{{ ''.__class__.__mro__ }}"]
    """)
    assert ran.status == "failed"
    message = ran.end("escape").data["message"]
    assert "sandbox" in message and "__class__" in message
    assert not ran.of("escape", "step.succeeded")


def test_undefined_key_of_a_registered_result_names_it_and_the_step_location(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: undefined
        steps:
          - {id: first, command: [echo, hi], register: out}
          - name: Use a missing key
            id: missing
            command: [echo, "{{ out.nonexistent_key }}"]
    """)
    assert ran.status == "failed"
    message = ran.end("missing").data["message"]
    assert "nonexistent_key" in message
    assert "runbook.yaml:4:5" in message
    assert "Undefined" not in message  # not a schema complaint about a leaked Undefined


def test_undefined_key_in_when_fails_the_step_instead_of_crashing(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: undefined when
        steps:
          - {id: first, command: [echo, hi], register: out}
          - {id: cond, debug: {msg: x}, when: out.nonexistent_key == 1}
    """)
    assert ran.status == "failed"
    assert "nonexistent_key" in ran.end("cond").data["message"]


def test_template_error_in_step_vars_fails_the_step_not_the_engine(tmp_path):
    ran = run_inprocess(tmp_path, """\
name: Vars error
steps:
  - name: Divides
    vars: {ratio: "{{ 1 / 0 }}"}
    command: [echo, "{{ ratio }}"]
  - block:
      - name: Inner
        command: [echo, "{{ other }}"]
    vars: {other: "{{ 1 / 0 }}"}
    ignore_errors: true
""")
    assert ran.status == "failed"
    failed = ran.of("divides", "step.failed")[0]
    assert "vars.ratio" in failed.data["message"] and "ZeroDivisionError" in failed.data["message"]


def test_read_only_command_reports_no_change(tmp_path):
    ran = run_inprocess(tmp_path, """\
name: Probe
steps:
  - name: Probe
    command: [echo, hi]
    mutates: false
    register: probe
  - name: Real change
    command: [echo, hi]
""")
    assert ran.status == "completed"
    assert ran.value("probe")["changed"] is False
    assert ran.value("real-change")["changed"] is True


def test_verify_message_is_a_template(tmp_path):
    ran = run_inprocess(tmp_path, """\
name: Message
inputs:
  expected: {type: integer, default: 5}
steps:
  - name: Count
    command: [echo, "3"]
    register: out
    verify:
      - that: out.stdout | int == expected
        message: "expected {{ expected }} rows, found {{ out.stdout }}"
""")
    assert ran.status == "failed"
    assert ran.of("count", "step.failed")[0].data["message"] == "expected 5 rows, found 3"


# --- observers ---

def test_an_observer_that_raises_is_stopped_and_the_run_goes_on(tmp_path, capsys):
    from helpers.run import journal_lines, write_runbook

    from engine.run.options import RunOptions
    from engine.run.start import RunRequest, start_run

    seen = []

    def flaky(event):
        seen.append(event.type)
        if len(seen) == 2:
            raise RuntimeError("the reporter broke")

    path = write_runbook(tmp_path, """
        name: observed
        steps:
          - {id: one, debug: {msg: one}}
          - {id: two, debug: {msg: two}}
    """)
    handle = start_run(RunRequest(runbook=str(path), options=RunOptions(),
                                  state_dir=str(tmp_path / "state"), operator="tester"), [flaky])
    assert handle.outcome.status == "completed"
    assert len(seen) == 2  # stopped after it failed, never called again
    types = [e["type"] for e in journal_lines(tmp_path / "state")]
    assert types[-1] == "run.completed" and types.count("step.succeeded") == 2
    warning = capsys.readouterr().err
    assert warning.count("observer failed and was stopped (RuntimeError: the reporter broke)") == 1
