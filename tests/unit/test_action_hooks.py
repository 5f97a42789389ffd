"""The two optional hooks an action may implement, and the target a plan sees:

- ``Action.literal_arg_errors(args)``: checks JSON Schema cannot express, run by the
  compiler (``runbook validate``) on arguments that passed the schema;
- ``Action.mutates_for(args)``: read-only or not per invocation (the step's
  ``mutates:`` still wins), used by the dry-run, verify retries and resume;
- ``plan()`` runs with ``ctx.target`` bound to the step's target, as ``run()`` does.

A test-only action stands in for the families that use them (``aws.call``).
"""
from __future__ import annotations

import pytest
import yaml
from helpers.run import run_inprocess

from engine import actions
from engine.actions.base import Action, Result
from engine.errors import SourceErrors


class Probe(Action):
    """Test action: read-only when mode is 'read'; 13 is refused at validate time."""

    name = "probe.thing"
    mutates = True
    args_schema = {"type": "object", "additionalProperties": False,
                   "properties": {"mode": {"type": "string"}, "n": {"type": "integer"}}}
    checked: list = []

    @classmethod
    def mutates_for(cls, args):
        return not (isinstance(args, dict) and args.get("mode") == "read")

    @classmethod
    def literal_arg_errors(cls, args):
        cls.checked.append(args)
        if args.get("n") == 13:
            yield ("n",), "13 is refused"

    def plan(self, args, ctx):
        return f"would write on {(ctx.target or {}).get('name', 'no target')}"

    def run(self, args, ctx):
        return Result(ok=True, changed=self.mutates_for(args),
                      data={"on": (ctx.target or {}).get("name")})


@pytest.fixture(autouse=True)
def probe_action(monkeypatch):
    known, get = actions.is_known, actions.get_action
    monkeypatch.setattr(actions, "is_known", lambda name: name == Probe.name or known(name))
    monkeypatch.setattr(actions, "get_action", lambda name: Probe if name == Probe.name else get(name))
    Probe.checked = []


def _runbook(*steps) -> str:
    return yaml.safe_dump({"name": "hooks", "steps": list(steps)})


def test_literal_arg_errors_are_reported_at_the_arguments_position(tmp_path):
    text = "name: hooks\nsteps:\n  - id: a\n    probe.thing:\n      mode: write\n      n: 13\n"
    with pytest.raises(SourceErrors) as refused:
        run_inprocess(tmp_path, text)
    message = str(refused.value)
    assert "runbook.yaml:6:10: probe.thing: 13 is refused" in message


def test_literal_arg_errors_is_not_asked_when_the_schema_already_failed(tmp_path):
    with pytest.raises(SourceErrors) as refused:
        run_inprocess(tmp_path, _runbook({"probe.thing": {"n": "x"}}))
    assert "is not of type 'integer'" in str(refused.value)
    assert Probe.checked == []


def test_mutates_for_decides_what_a_dry_run_runs_and_what_it_plans(tmp_path):
    ran = run_inprocess(tmp_path, _runbook({"id": "read", "probe.thing": {"mode": "read"}},
                                           {"id": "write", "probe.thing": {"mode": "write"}},
                                           {"id": "declared", "mutates": False,
                                            "probe.thing": {"mode": "write"}}), dry_run=True)
    assert ran.end("read").type == "step.succeeded"
    assert ran.end("write").type == "step.planned"
    assert ran.end("declared").type == "step.succeeded"


def test_a_plan_sees_the_steps_target(tmp_path):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("targets:\n  east: {region: us-east-1}\n  west: {region: us-west-2}\n")
    ran = run_inprocess(tmp_path, _runbook({"id": "write", "target": ["east", "west"],
                                            "probe.thing": {"mode": "write"}}),
                        inventories=[inventory], dry_run=True)
    plans = [e.data["plan"] for e in ran.of("write", "step.planned")]
    assert plans == ["would write on east", "would write on west"]
