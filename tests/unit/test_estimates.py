"""Estimates from evidence: the plan's time per step is the median of earlier real runs, else
the author's estimate, else a default; durations include retries and waits; a run past its
RTO says by how much."""
from __future__ import annotations

from helpers.run import run_inprocess

TIMED = """
    name: timed
    rto: 1h
    inputs: {dir: {type: string, required: true}}
    steps:
      - {id: first, command: [sleep, "0.4"], expected_duration: 10m}
      - id: flaky
        shell: "n=$(cat {{ dir }}/count 2>/dev/null || echo 0); echo $((n+1)) > {{ dir }}/count; test $n -ge 2"
        retries: 3
        delay: 0.3
      - {id: last, command: [sleep, "0.2"]}
"""


def test_a_steps_duration_includes_its_retries_and_waits(tmp_path):
    ran = run_inprocess(tmp_path, TIMED, extra=[f"dir={tmp_path}"])
    assert ran.status == "completed"
    flaky = ran.end("flaky").data
    assert flaky["attempts"] == 3
    assert flaky["elapsed"] >= 0.6  # two retry delays of 0.3 s


def test_after_three_runs_the_estimate_is_within_20_percent_of_the_next(tmp_path):
    for _ in range(3):
        (tmp_path / "count").unlink(missing_ok=True)
        assert run_inprocess(tmp_path, TIMED, extra=[f"dir={tmp_path}"]).status == "completed"
    rehearsal = run_inprocess(tmp_path, TIMED, extra=[f"dir={tmp_path}"], dry_run=True)
    planned = {e.step["id"]: e.data for e in rehearsal.events if e.type == "step.planned"}
    assert planned["first"]["estimate_source"] == "median of 3 runs"
    assert planned["first"]["estimate"] < 60  # measured, not the author's 10m
    estimate = rehearsal.events[-1].data["estimate"]
    (tmp_path / "count").unlink(missing_ok=True)
    measured = run_inprocess(tmp_path, TIMED, extra=[f"dir={tmp_path}"]).events[-1].data["elapsed"]
    assert abs(estimate - measured) <= 0.2 * measured, (estimate, measured)


def test_without_history_the_authors_estimate_then_a_default_count(tmp_path):
    rehearsal = run_inprocess(tmp_path, TIMED, extra=[f"dir={tmp_path}"], dry_run=True)
    planned = {e.step["id"]: e.data for e in rehearsal.events if e.type == "step.planned"}
    assert (planned["first"]["estimate"], planned["first"]["estimate_source"]) == (
        600.0, "author's estimate")
    assert (planned["last"]["estimate"], planned["last"]["estimate_source"]) == (1.0, "default")
    end = rehearsal.events[-1].data
    assert end["estimate_sources"] == {"author's estimate": 1, "default": 2}


def test_conditional_steps_widen_the_estimate_into_a_range(tmp_path):
    rehearsal = run_inprocess(tmp_path, """
        name: branches
        steps:
          - {id: probe, command: [hostname], register: probe, expected_duration: 0}
          - {id: a, command: [touch, a], when: "probe.rc == 0", expected_duration: 5m}
          - {id: b, command: [touch, b], when: "probe.rc != 0", expected_duration: 7m}
          - {id: always, command: [touch, c], expected_duration: 1m}
    """, dry_run=True)
    end = rehearsal.events[-1].data
    assert end["estimate_low"] == 60.0
    assert end["estimate"] == 60.0 + 300 + 420  # either branch may run: both in the upper bound


def test_a_run_past_its_rto_says_by_how_much(tmp_path):
    ran = run_inprocess(tmp_path, """
        name: slow
        rto: 1s
        steps:
          - command: [sleep, "1.3"]
    """)
    end = ran.events[-1]
    assert end.type == "run.completed"
    assert 0.2 <= end.data["rto_missed_by"] < 5
    on_time = run_inprocess(tmp_path, """
        name: quick
        rto: 1h
        steps:
          - command: ["true"]
    """)
    assert on_time.events[-1].data["rto_missed_by"] is None
