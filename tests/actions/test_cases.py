"""Action tests as data: one generated test per ``tests/actions/<action>/<case>.yaml``.

A case is what an operator would write, run through the real engine against a
real service (pyinfra's ``tests/operations/*/*.json`` is the model)::

    description: scaling a Deployment up shows the change and makes it
    service: kubernetes          # a ``service_<name>`` fixture (tests/services/); omit for none
    target: lab_cluster          # an inventory target of that service (optional)
    setup:                       # runbook steps run for real first (optional)
      - kubernetes.scale: {namespace: production, kind: Deployment, name: api, replicas: 3}
    args: {namespace: production, kind: Deployment, name: api, replicas: 5}
    keywords: {mutates: false}   # more step keywords for the case's step (optional)
    run: true                    # false: only the dry-run (plan) is checked
    expect:
      plan: "scale production/Deployment/api 3 → 5"   # the dry-run's plan line, exactly
      plan_contains: "3 → 5"                          # ... or a part of it
      finding: "has no component 'Api'"               # the plan found a problem: a finding
      ok: true
      changed: true
      message: "..."              # exactly, or message_contains
      data: {previous: 3}         # a subset of the registered value
      invalid: "is not of type"   # the runbook is refused before running (argument check)

Strings may use ``{{ tmp }}`` (the test's own directory) and the variables the
service fixture provides (``{{ lab.… }}``). The dry-run happens after the set-up
and before the real run, so its plan describes the state the real run changes.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers.run import run_inprocess

from engine.errors import SourceErrors

CASES = sorted(Path(__file__).parent.glob("*/*.yaml"))


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_action_case(path: Path, request, tmp_path):
    case = yaml.safe_load(path.read_text())
    service = _service(request, case.get("service"))
    variables = {"tmp": str(tmp_path), **service["vars"]}
    extra = [_json(variables)]
    inventories = [service["inventory"]] if service.get("inventory") else []
    expect = _rendered(case.get("expect") or {}, variables)

    if case.get("setup"):
        setup = run_inprocess(tmp_path, _runbook("setup", case["setup"]), extra=extra,
                              inventories=inventories)
        assert setup.status == "completed", setup.handle.outcome.message

    step = {"id": "case", path.parent.name: case.get("args") or {}, "register": "case",
            **({"target": case["target"]} if case.get("target") else {}),
            **(case.get("keywords") or {})}
    if "invalid" in expect:
        with pytest.raises(SourceErrors) as refused:
            run_inprocess(tmp_path, _runbook("case", [step]), extra=extra, inventories=inventories)
        assert expect["invalid"] in str(refused.value)
        return

    rehearsal = run_inprocess(tmp_path, _runbook("case", [step]), extra=extra,
                              inventories=inventories, dry_run=True)
    _check_plan(rehearsal, expect)
    if case.get("run", True):
        real = run_inprocess(tmp_path, _runbook("case", [step]), extra=extra,
                             inventories=inventories)
        _check_result(real, expect)


def _service(request, name: str | None) -> dict:
    if not name:
        return {"inventory": None, "vars": {}}
    return request.getfixturevalue(f"service_{name}")


def _rendered(value, variables: dict):
    """Expectations may name the test's own paths and the service's values too."""
    from jinja2 import StrictUndefined, Template

    if isinstance(value, str) and "{{" in value:
        return Template(value, undefined=StrictUndefined).render(variables)
    if isinstance(value, dict):
        return {k: _rendered(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_rendered(v, variables) for v in value]
    return value


def _runbook(name: str, steps: list) -> str:
    return yaml.safe_dump({"name": name, "steps": steps}, sort_keys=False, allow_unicode=True)


def _json(values: dict) -> str:
    import json

    return json.dumps(values, default=str)


def _check_plan(rehearsal, expect: dict) -> None:
    if "finding" in expect:
        [finding] = rehearsal.handle.outcome.findings
        assert expect["finding"] in finding["message"], finding["message"]
        [planned] = rehearsal.of("case", "step.planned")  # still in the plan, with its finding
        assert expect["finding"] in planned.data["finding"]
    if "plan" not in expect and "plan_contains" not in expect:
        return
    planned = rehearsal.of("case", "step.planned")
    assert planned, f"the dry-run did not plan the step: {rehearsal.types}"
    plan = planned[-1].data["plan"]
    if "plan" in expect:
        assert plan == expect["plan"]
    if "plan_contains" in expect:
        assert expect["plan_contains"] in plan, plan


def _check_result(real, expect: dict) -> None:
    end = real.end("case")
    value = real.value("case")
    if "ok" in expect:
        assert value["ok"] is expect["ok"], end.data.get("message")
    if "changed" in expect:
        assert value["changed"] is expect["changed"], end.data.get("message")
    if "message" in expect:
        assert end.data["message"] == expect["message"]
    if "message_contains" in expect:
        assert expect["message_contains"] in end.data["message"], end.data["message"]
    for key, wanted in (expect.get("data") or {}).items():
        assert value.get(key) == wanted, (key, value.get(key))
