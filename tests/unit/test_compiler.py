"""Checks beyond the JSON Schema: every mistake ``runbook validate`` must catch,
each reported at the offending value's own line and column, all at once."""
from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from engine.source.compiler import compile_runbook, load_runbook
from engine.errors import SourceErrors
from engine.source.loader import load_text
from engine.source.model import StepKind

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "validate"


def compile_text(text: str, known=()):
    return compile_runbook(load_text(textwrap.dedent(text).lstrip("\n"), "rb.yaml"), known)


def problems(text: str, known=()) -> list[tuple[int, int, str]]:
    """(line, col, message) of every problem; fails the test if the runbook is valid."""
    with pytest.raises(SourceErrors) as caught:
        compile_text(text, known)
    return [(e.pos.line, e.pos.col, e.message) for e in caught.value.errors]


def only_problem(text: str, known=()) -> tuple[int, int, str]:
    found = problems(text, known)
    assert len(found) == 1, found
    return found[0]


# --- a valid runbook ---

def test_valid_runbook_compiles_to_steps():
    runbook = compile_text("""
        name: Restore
        rto: 1h30m
        inputs:
          backup_file: {type: string, required: true}
        steps:
          - name: Check the dump
            file.checksum: {path: "{{ backup_file }}", sha256_file: "{{ backup_file }}.sha256"}
            timeout: 5m
          - name: Restore
            command: ["pg_restore", "{{ backup_file }}"]
    """)
    assert runbook.name == "Restore" and runbook.rto == 5400
    assert [s.id for s in runbook.steps] == ["check-the-dump", "restore"]
    assert runbook.steps[0].action == "file.checksum" and runbook.steps[0].timeout == 300
    assert runbook.steps[1].pos.line == 9
    assert runbook.inputs["backup_file"].required


def test_every_fixture_runbook_is_valid():
    for path in sorted((FIXTURES / "valid").glob("*.yaml")):
        assert load_runbook(path).steps, path
    assert load_runbook(FIXTURES / "with_inventory" / "needs_inventory.yaml", {"backup_file"}).steps


def test_step_ids_are_slugs_made_unique():
    runbook = compile_text("""
        name: ids
        steps:
          - name: Restart API
            command: [ls]
          - name: Restart API
            command: [ls]
            rollback:
              - command: [ls]
          - id: restart-api-3
            command: [ls]
          - name: Restart API
            command: [ls]
          - block:
              - name: Inner
                command: [ls]
    """)
    ids = [s.id for s in runbook.walk()]
    assert ids == ["restart-api", "restart-api-2", "restart-api-2-rollback-command",
                   "restart-api-3", "restart-api-4", "step", "inner"]
    assert len(set(ids)) == len(ids)
    assert [s.path for s in runbook.walk()][-1] == "5.block.1"
    assert runbook.steps[4].kind is StepKind.BLOCK


def test_ten_thousand_steps_with_one_name_compile_in_linear_time():
    def compile_seconds(count: int) -> tuple[float, object]:
        steps = "".join("  - name: Restart\n    command: [ls]\n" for _ in range(count))
        started = time.process_time()  # CPU time: what this process did, whatever the load
        runbook = compile_runbook(load_text("name: big\nsteps:\n" + steps, "big.yaml"))
        return time.process_time() - started, runbook

    small, _ = compile_seconds(1_250)
    large, runbook = compile_seconds(10_000)
    assert runbook.steps[-1].id == "restart-10000"
    # 8x the steps: linear work takes ~8x as long, deriving ids in O(n^2) ~64x.
    assert large < 24 * small, f"{large:.2f}s vs {small:.2f}s: ids must not be derived in O(n^2)"


# --- unknown actions and keywords ---

def test_unknown_action_suggests_closest_name():
    assert only_problem("""
        name: x
        steps:
          - name: List
            comand: [ls]
    """) == (4, 5, "unknown action 'comand' (did you mean 'command'?)")


def test_unknown_dotted_action_suggests_the_family_verb():
    line, col, message = only_problem("""
        name: x
        steps:
          - file.checksun: {path: x}
    """)
    assert (line, col) == (3, 5)
    assert message == "unknown action 'file.checksun' (did you mean 'file.checksum'?)"


def test_unknown_action_without_a_close_match_points_to_the_list():
    assert only_problem("""
        name: x
        steps:
          - frobnicate: {}
    """) == (3, 5, "unknown action or keyword 'frobnicate' (see 'runbook actions')")


def test_unknown_step_keyword_suggests_the_keyword():
    assert only_problem("""
        name: x
        steps:
          - command: [ls]
            retires: 3
    """) == (4, 5, "unknown step keyword 'retires' (did you mean 'retries'?)")


def test_more_than_one_action_in_a_step_is_reported_at_the_second():
    assert only_problem("""
        name: x
        steps:
          - command: [ls]
            shell: echo hi
    """) == (4, 5, "more than one action in a step: command, shell (split it into separate steps)")


def test_step_without_an_action_is_an_error():
    line, col, message = only_problem("""
        name: x
        steps:
          - name: Just a name
            retries: 2
    """)
    assert (line, col) == (3, 5)
    assert message.startswith("step has no action")


def test_numeric_key_in_a_step_is_reported_not_crashed_on():
    line, col, message = only_problem("""
        name: x
        steps:
          - command: [ls]
            3: x
    """)
    assert (line, col) == (4, 5) and "'3'" in message


# --- durations ---

@pytest.mark.parametrize("keyword", ["timeout", "delay", "expected_duration"])
def test_malformed_step_duration_is_reported_at_its_value(keyword):
    assert only_problem(f"""
        name: x
        steps:
          - command: [ls]
            {keyword}: 5x
    """) == (4, 5 + len(keyword) + 2,
             f"steps[0].{keyword}: must be a duration such as 90, 90s, 15m, 1h30m, 500ms, got '5x'")


def test_malformed_rto_and_verify_delay_are_reported():
    found = problems("""
        name: x
        rto: soon
        steps:
          - command: [ls]
            verify:
              - that: "true"
                delay: 1 minute
    """)
    assert [(line, col) for line, col, _ in found] == [(2, 6), (7, 16)]
    assert all("must be a duration" in message for _, _, message in found)


def test_empty_duration_is_not_silently_ignored():
    line, col, message = only_problem("""
        name: x
        steps:
          - command: [ls]
            timeout: ""
    """)
    assert (line, col) == (4, 14) and "must be a duration" in message


def test_templated_duration_gets_one_clear_message():
    found = problems("""
        name: x
        inputs:
          t: {default: 5m}
        steps:
          - command: [ls]
            timeout: "{{ t }}"
    """)
    assert found == [(6, 14, "timeout: a duration cannot be a template")]


def test_valid_durations_are_converted_to_seconds():
    step = compile_text("""
        name: x
        steps:
          - command: [ls]
            timeout: 1h30m
            delay: 250ms
            expected_duration: 90
    """).steps[0]
    assert (step.timeout, step.delay, step.expected_duration) == (5400, 0.25, 90)


# --- ids ---

def test_duplicate_step_id_names_the_first_use():
    assert only_problem("""
        name: x
        steps:
          - id: restore
            command: [ls]
          - block:
              - id: restore
                command: [ls]
    """) == (6, 13, "duplicate step id 'restore' (first used at line 3)")


def test_duplicate_ids_in_rollback_steps_are_found():
    line, col, message = only_problem("""
        name: x
        steps:
          - id: undo
            command: [ls]
            rollback:
              - id: undo
                command: [ls]
    """)
    assert (line, col) == (6, 13) and "duplicate step id 'undo'" in message


# --- action arguments ---

def test_unknown_argument_is_reported_at_the_arguments_own_key():
    assert only_problem("""
        name: x
        steps:
          - file.checksum: {path: x, sha265: y}
    """) == (3, 30, "file.checksum: unknown argument 'sha265' (did you mean 'sha256'?)")


def test_unknown_argument_in_block_style_is_at_its_line():
    assert only_problem("""
        name: x
        steps:
          - name: Check
            file.checksum:
              path: /backups/db.dump
              sha256_fiel: /backups/db.dump.sha256
    """) == (6, 7, "file.checksum: unknown argument 'sha256_fiel' (did you mean 'sha256_file'?)")


def test_wrong_argument_type_is_reported_at_the_value():
    assert only_problem("""
        name: x
        steps:
          - file.exists: {path: x, min_bytes: ten}
    """) == (3, 39, "file.exists: 'ten' is not of type 'integer'")


def test_missing_required_argument_is_reported_at_the_arguments():
    assert only_problem("""
        name: x
        steps:
          - file.exists: {type: file}
    """) == (3, 18, "file.exists: 'path' is a required property")


def test_argument_mistake_inside_one_form_of_several_is_explained_in_that_form():
    assert only_problem("""
        name: x
        steps:
          - command: {argv: [ls], chdr: /tmp}
    """) == (3, 27, "command: unknown argument 'chdr' (did you mean 'chdir'?)")


def test_argument_of_the_wrong_kind_lists_the_accepted_kinds():
    assert only_problem("""
        name: x
        steps:
          - command: 5
    """) == (3, 14, "command: must be a list, a string or a mapping, got an integer")


def test_exclusive_arguments_are_explained_in_words():
    found = problems("""
        name: x
        steps:
          - file.checksum: {path: x, sha256: a, sha256_file: b}
          - wait_for: {host: db}
          - wait_for: {port: 5432, path: /tmp/x}
    """)
    assert found == [
        (3, 20, "file.checksum: 'sha256' and 'sha256_file' cannot be used together"),
        (4, 15, "wait_for: needs one of 'port' or 'path'"),
        (5, 15, "wait_for: give only one of 'port' or 'path'"),
    ]


def test_templated_argument_values_are_checked_at_run_time_not_now():
    compile_text("""
        name: x
        inputs:
          n: {type: integer, default: 3}
        steps:
          - file.exists: {path: x, min_bytes: "{{ n }}"}
    """)


# --- groups ---

@pytest.mark.parametrize("group", ["rescue", "always"])
def test_rescue_or_always_without_block_is_an_error(group):
    assert only_problem(f"""
        name: x
        steps:
          - command: [ls]
            {group}:
              - command: [ls]
    """) == (4, 5, f"'{group}' needs a 'block' in the same step")


def test_block_with_an_action_is_an_error():
    line, col, message = only_problem("""
        name: x
        steps:
          - command: [ls]
            block:
              - command: [ls]
    """)
    assert (line, col) == (3, 5)
    assert message == "a step with 'block' cannot also run an action ('command')"


def test_parallel_count_needs_a_loop():
    assert only_problem("""
        name: x
        steps:
          - command: [ls]
            parallel: 3
    """) == (4, 5, "'parallel: N' needs a 'loop' or a 'target' (or give 'parallel' a list of steps)")


def test_mistakes_inside_nested_groups_are_found():
    found = problems("""
        name: x
        steps:
          - block:
              - parallel:
                  - comand: [ls]
            rescue:
              - command: [ls]
                retires: 1
    """)
    assert [(line, col) for line, col, _ in found] == [(5, 13), (8, 9)]


# --- undefined names ---

def test_undefined_variable_is_reported_at_the_strings_line():
    assert only_problem("""
        name: x
        steps:
          - command: ["echo", "{{ backup_fiel }}"]
    """) == (3, 23, "undefined variable 'backup_fiel': not an input, var, registered result, "
                    "loop variable or set_fact key")


def test_undefined_variable_suggests_a_defined_one():
    line, col, message = only_problem("""
        name: x
        inputs:
          backup_file: {type: string}
        steps:
          - command: ["echo", "{{ backup_fiel }}"]
    """)
    assert "(did you mean 'backup_file'?)" in message


def test_undefined_name_in_a_condition_is_reported():
    assert only_problem("""
        name: x
        steps:
          - command: [ls]
            when: missing_flag and true
    """)[:2] == (4, 11)


def test_undefined_names_in_verify_assert_and_until_are_reported():
    found = problems("""
        name: x
        steps:
          - command: [ls]
            register: out
            until: out.rc == expected_rc
            verify:
              - out.rc == good_rc
              - that: [out.ok, ready]
          - assert: {that: "out.rc == wanted_rc"}
    """)
    names = sorted(message.split("'")[1] for _, _, message in found)
    assert names == ["expected_rc", "good_rc", "ready", "wanted_rc"]


def test_every_kind_of_definition_counts():
    compile_text("""
        name: x
        inputs:
          env: {type: string, default: dr}
        vars:
          base: "https://{{ env }}.example.com"
        steps:
          - command: ["echo", "{{ base }}"]
            register: first
          - set_fact: {stamp: "{{ run.id }}"}
          - command: ["echo", "{{ host }}", "{{ first.rc }}", "{{ stamp }}"]
            loop: [a, b]
            loop_var: host
          - command: ["echo", "{{ item }}", "{{ local }}", "{{ targets.db.host }}"]
            loop: "{{ groups.databases }}"
            vars: {local: 1}
          - command: ["echo", "{{ secrets.token }}", "{{ note | default('') }}"]
            when: flag is defined and flag
    """)


def test_names_from_the_inventory_or_extra_vars_count_as_defined():
    text = """
        name: x
        steps:
          - command: ["echo", "{{ backup_file }}"]
    """
    assert "undefined variable 'backup_file'" in only_problem(text)[2]
    compile_text(text, known={"backup_file"})


def test_template_syntax_error_is_reported_at_the_string():
    assert only_problem("""
        name: x
        steps:
          - command: ["echo", "{{ nope }"]
    """) == (3, 23, "template syntax error: unexpected '}'")


def test_unknown_filter_is_reported_not_crashed_on():
    line, col, message = only_problem("""
        name: x
        vars: {n: 1}
        steps:
          - command: ["echo", "{{ n | no_such_filter }}"]
    """)
    assert (line, col) == (4, 23) and "No filter named 'no_such_filter'" in message


def test_condition_syntax_error_is_reported():
    line, col, message = only_problem("""
        name: x
        steps:
          - command: [ls]
            when: tonight at 10
    """)
    assert (line, col) == (4, 11) and message.startswith("template syntax error")


def test_argument_keys_named_like_keywords_are_data_not_expressions():
    compile_text("""
        name: x
        steps:
          - http.request:
              url: https://status.example.com/api
              method: POST
              json: {when: tonight at 10, until: tomorrow, that: the database}
    """)


def test_non_string_variable_names_are_reported_at_the_key():
    found = problems("""
        name: x
        vars:
          1: one
          bad-name: two
        steps:
          - command: [ls]
    """)
    assert [(line, col) for line, col, _ in found] == [(3, 3), (4, 3)]
    assert all("invalid name" in message for _, _, message in found)


# --- all at once ---

def test_every_mistake_is_reported_at_once_in_file_order():
    with pytest.raises(SourceErrors) as caught:
        load_runbook(FIXTURES / "invalid" / "every_mistake.yaml")
    errors = caught.value.errors
    lines = [e.pos.line for e in errors]
    assert lines == sorted(lines)
    assert lines == [2, 4, 7, 10, 13, 16, 21, 24, 27, 30, 32, 35]
    assert all(e.source_line.strip() for e in errors)
