"""The JSON Schemas: the committed files are what ``runbook schema`` prints, they
are valid 2020-12 schemas, every shipped runbook passes them, and schema errors
land on the offending value's position."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from engine.actions import action_names, get_action
from engine.cli.app import cli
from engine.source.loader import load_text
from engine.source.schema import (DIALECT, INVENTORY_SCHEMA_ID, SCHEMA_ID, STEP_KEYWORDS,
                           inventory_schema, runbook_schema, schema_errors)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "validate"
RUNBOOK_SCHEMA_FILE = ROOT / "schemas" / "runbook.schema.json"
INVENTORY_SCHEMA_FILE = ROOT / "schemas" / "inventory.schema.json"

SHIPPED_RUNBOOKS = sorted((ROOT / "playbooks").glob("*.y*ml")) + sorted((FIXTURES / "valid").glob("*.yaml"))
SHIPPED_INVENTORIES = sorted((ROOT / "inventories").glob("*.y*ml")) + [FIXTURES / "inventory" / "lab.yaml"]


def printed(*args: str) -> str:
    result = CliRunner().invoke(cli, ["schema", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def runbook_validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(RUNBOOK_SCHEMA_FILE.read_text()))


# --- the committed files ---

@pytest.mark.parametrize("path, args", [(RUNBOOK_SCHEMA_FILE, ()), (INVENTORY_SCHEMA_FILE, ("--inventory",))],
                         ids=["runbook", "inventory"])
def test_committed_schema_is_exactly_what_runbook_schema_prints(path, args):
    expected = printed(*args)
    assert path.read_text() == expected, (
        f"{path.relative_to(ROOT)} is stale: regenerate it with "
        f"`runbook schema {' '.join(args)} > {path.relative_to(ROOT)}`".replace("  ", " "))


def test_schema_command_prints_the_composed_runbook_schema():
    assert json.loads(printed()) == runbook_schema()
    assert json.loads(printed("--inventory")) == inventory_schema()


@pytest.mark.parametrize("schema", [runbook_schema(), inventory_schema()], ids=["runbook", "inventory"])
def test_schema_is_a_valid_2020_12_schema(schema):
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] and schema["description"]


def test_schemas_have_their_own_ids():
    assert runbook_schema()["$id"] == SCHEMA_ID and SCHEMA_ID.endswith("/runbook.schema.json")
    assert inventory_schema()["$id"] == INVENTORY_SCHEMA_ID
    assert INVENTORY_SCHEMA_ID.endswith("/inventory.schema.json")


def test_every_registered_action_is_composed_into_the_step_schema():
    step = runbook_schema()["$defs"]["step"]
    for name in action_names():
        args = step["properties"][name]
        assert {k: v for k, v in args.items() if k != "description"} == \
               {k: v for k, v in get_action(name).args_schema.items() if k != "description"}
        assert args["description"], name
        assert {"required": [name]} in step["oneOf"]


def test_every_keyword_and_top_level_key_is_described():
    schema = runbook_schema()
    undocumented = [k for k, v in STEP_KEYWORDS.items() if not v.get("description")]
    undocumented += [k for k, v in schema["properties"].items()
                     if k != "description" and not v.get("description")]
    undocumented += [k for k, v in inventory_schema()["properties"].items() if not v.get("description")]
    assert undocumented == []


# --- shipped runbooks pass jsonschema directly ---

@pytest.mark.parametrize("path", SHIPPED_RUNBOOKS, ids=lambda p: p.name)
def test_shipped_runbook_passes_the_committed_schema(path, runbook_validator):
    errors = [e.message for e in runbook_validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


def test_the_example_inventories_are_shipped():
    shipped = {p.name for p in (ROOT / "inventories").glob("*.y*ml")}
    assert {"lab.yaml", "production.yaml", "dr.yaml"} <= shipped


@pytest.mark.parametrize("path", SHIPPED_INVENTORIES, ids=lambda p: p.name)
def test_shipped_inventory_loads_like_runbook_run_loads_it(path):
    from engine.source.inventory import load_inventories

    inventory = load_inventories([path])
    assert inventory.targets and all("name" in t for t in inventory.targets.values())


@pytest.mark.parametrize("path", SHIPPED_INVENTORIES, ids=lambda p: p.name)
def test_shipped_inventory_passes_the_committed_schema(path):
    validator = Draft202012Validator(json.loads(INVENTORY_SCHEMA_FILE.read_text()))
    assert [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))] == []


# --- the composed schema refuses what validate refuses (for editors) ---

@pytest.mark.parametrize("step", [
    {"comand": ["ls"]},
    {"command": ["ls"], "shell": "echo"},
    {"command": ["ls"], "retires": 3},
    {"command": ["ls"], "timeout": "5x"},
    {"command": ["ls"], "rescue": [{"command": ["ls"]}]},
    {"block": [{"command": ["ls"]}], "command": ["ls"]},
    {"file.checksum": {"path": "x", "sha265": "y"}},
    {"file.checksum": {"path": "x", "sha256": "a", "sha256_file": "b"}},
    {"name": "no action"},
], ids=["unknown-action", "two-actions", "unknown-keyword", "bad-duration", "rescue-alone",
        "block-and-action", "unknown-argument", "exclusive-arguments", "no-action"])
def test_composed_schema_refuses_a_bad_step(step, runbook_validator):
    assert not runbook_validator.is_valid({"name": "x", "steps": [step]})


def test_composed_schema_accepts_a_loop_with_parallel_count(runbook_validator):
    step = {"command": ["echo", "{{ item }}"], "loop": [1, 2], "parallel": 2}
    assert runbook_validator.is_valid({"name": "x", "steps": [step]})


def test_inventory_schema_refuses_a_secret_with_two_sources():
    validator = Draft202012Validator(inventory_schema())
    assert not validator.is_valid({"secrets": {"pw": {"env": "A", "file": "/b"}}})
    assert validator.is_valid({"secrets": {"pw": {"env": "A"}}})


# --- schema errors land on positions ---

def located(text: str, kind: str = "runbook") -> list[tuple[int, int, str]]:
    doc = load_text(text, "f.yaml")
    return [(e.pos.line, e.pos.col, e.message) for e in schema_errors(doc, kind)]


@pytest.mark.parametrize("text, what", [("", "empty"), ("- a\n- b\n", "a list"), ("just text\n", "a str")])
def test_top_level_must_be_a_mapping(text, what):
    assert located(text) == [(1, 1, f"a runbook must be a mapping at the top level, this file is {what}")]


def test_missing_required_keys_are_named():
    assert located("description: no name, no steps\n") == [
        (1, 1, "missing required key 'name'"), (1, 1, "missing required key 'steps'")]


def test_unknown_top_level_key_suggests_the_right_one():
    assert located("name: x\nstep:\n  - command: [ls]\n") == [
        (1, 1, "missing required key 'steps'"), (2, 1, "unknown key 'step' (did you mean 'steps'?)")]


def test_wrong_value_is_reported_at_the_value_with_its_path():
    found = located("name: x\non_failure: retry\nsteps:\n  - command: [ls]\n    retries: many\n")
    assert found == [(2, 13, "on_failure: 'retry' is not one of ['stop', 'rollback']"),
                     (5, 14, "steps[0].retries: 'many' is not of type 'integer'")]


def test_empty_step_list_is_refused():
    assert located("name: x\nsteps: []\n") == [(2, 8, "steps: [] should be non-empty")]


def test_parallel_of_the_wrong_kind_lists_the_accepted_kinds():
    found = located("name: x\nsteps:\n  - command: [ls]\n    parallel: lots\n")
    assert found == [(4, 15, "steps[0].parallel: must be an integer or a list, got a string")]


def test_unknown_input_option_is_reported_at_its_key():
    found = located("name: x\ninputs:\n  db:\n    type: string\n    requird: true\nsteps: [{command: [ls]}]\n")
    assert found == [(5, 5, "unknown key 'requird' (did you mean 'required'?)")]


def test_inventory_errors_are_located():
    text = (FIXTURES / "inventory" / "bad.yaml").read_text()
    assert located(text, "inventory") == [
        (2, 1, "unknown key 'target' (did you mean 'targets'?)"),
        (5, 16, "secrets.db_password: a secret takes exactly one of env, file or value"),
    ]
