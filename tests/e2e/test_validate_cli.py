"""``runbook validate`` and ``runbook schema`` as an author runs them: a real
subprocess, real files, exit codes and the exact text on stderr."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "validate"
EVERY_MISTAKE = FIXTURES / "invalid" / "every_mistake.yaml"
HEADER = re.compile(r"^(?P<file>[^\s].*?):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")


def runbook(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def headers(stderr: str) -> list[tuple[str, int, int, str]]:
    """(file, line, col, message) of every error, in the order printed."""
    found = []
    for line in stderr.splitlines():
        match = HEADER.match(line)
        if match:
            found.append((match["file"], int(match["line"]), int(match["col"]), match["message"]))
    return found


# --- valid input ---

def test_valid_runbooks_exit_zero_and_say_so():
    result = runbook("validate", FIXTURES / "valid")
    assert result.returncode == 0, result.stderr
    count = len(list((FIXTURES / "valid").glob("*.yaml")))
    assert result.stdout == f"ok: {count} runbook(s) valid\n"
    assert result.stderr == ""


def test_shipped_playbooks_validate():
    result = runbook("validate", "playbooks")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


# --- every problem at once, located and quoted ---

EXPECTED = [
    (2, 6, "rto: must be a duration such as 90, 90s, 15m, 1h30m, 500ms, got '5x'"),
    (4, 3, "inputs: invalid name '1bad': use letters, digits and '_', not starting with a digit"),
    (7, 5, "unknown action 'comand' (did you mean 'command'?)"),
    (10, 5, "more than one action in a step: command, shell (split it into separate steps)"),
    (13, 5, "unknown step keyword 'retires' (did you mean 'retries'?)"),
    (16, 14, "steps[3].timeout: must be a duration such as 90, 90s, 15m, 1h30m, 500ms, got '5x'"),
    (21, 9, "duplicate step id 'restore' (first used at line 18)"),
    (24, 30, "file.checksum: unknown argument 'sha265' (did you mean 'sha256'?)"),
    (27, 5, "'rescue' needs a 'block' in the same step"),
    (30, 23, "undefined variable 'backup_fiel': not an input, var, registered result, "
             "loop variable or set_fact key"),
    (32, 23, "template syntax error: unexpected '}'"),
    (35, 11, "undefined variable 'missing_flag': not an input, var, registered result, "
             "loop variable or set_fact key"),
]


def test_every_mistake_is_reported_at_once_with_file_line_col():
    result = runbook("validate", EVERY_MISTAKE.relative_to(ROOT))
    assert result.returncode == 2
    assert result.stdout == ""
    name = str(EVERY_MISTAKE.relative_to(ROOT))
    assert headers(result.stderr) == [(name, *expected) for expected in EXPECTED]
    assert result.stderr.splitlines()[-1] == f"{len(EXPECTED)} problem(s) in 1 file(s)"
    assert "Traceback" not in result.stderr


def test_each_error_quotes_its_line_with_a_caret_under_the_column():
    result = runbook("validate", EVERY_MISTAKE)
    lines = result.stderr.splitlines()
    source = EVERY_MISTAKE.read_text().splitlines()
    checked = 0
    for index, line in enumerate(lines):
        match = HEADER.match(line)
        if not match:
            continue
        quoted, caret = lines[index + 1], lines[index + 2]
        assert quoted == "    " + source[int(match["line"]) - 1]
        assert caret == " " * (4 + int(match["col"]) - 1) + "^"
        checked += 1
    assert checked == len(EXPECTED)


def test_unknown_argument_caret_points_at_the_argument():
    result = runbook("validate", EVERY_MISTAKE)
    lines = result.stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if "sha265" in line and HEADER.match(line))
    assert lines[at + 1][lines[at + 2].index("^"):].startswith("sha265: y")


def test_problems_in_several_files_are_all_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\nsteps:\n  - comand: [ls]\n")
    (tmp_path / "b.yml").write_text("name: b\nsteps:\n  - command: [ls]\n    retires: 2\n")
    (tmp_path / "c.yaml").write_text("name: c\nsteps:\n  - command: [ls]\n")
    (tmp_path / "notes.txt").write_text("not a runbook")
    result = runbook("validate", tmp_path)
    assert result.returncode == 2
    found = [(Path(f).name, line, col) for f, line, col, _ in headers(result.stderr)]
    assert found == [("a.yaml", 3, 5), ("b.yml", 4, 5)]
    assert result.stderr.splitlines()[-1] == "2 problem(s) in 3 file(s)"


def test_a_broken_file_does_not_hide_problems_in_the_next(tmp_path):
    (tmp_path / "a.yaml").write_text("name: [unclosed\n")
    (tmp_path / "b.yaml").write_text("name: b\nsteps:\n  - comand: [ls]\n")
    result = runbook("validate", tmp_path / "a.yaml", tmp_path / "b.yaml")
    assert result.returncode == 2
    assert [Path(f).name for f, *_ in headers(result.stderr)] == ["a.yaml", "b.yaml"]


def test_missing_file_is_a_located_error(tmp_path):
    result = runbook("validate", tmp_path / "absent.yaml")
    assert result.returncode == 2
    assert headers(result.stderr) == [(str(tmp_path / "absent.yaml"), 1, 1,
                                       "cannot read file: No such file or directory")]


# --- names from outside the runbook ---

NEEDS_INVENTORY = FIXTURES / "with_inventory" / "needs_inventory.yaml"


def test_name_from_nowhere_is_undefined():
    result = runbook("validate", NEEDS_INVENTORY)
    assert result.returncode == 2
    assert headers(result.stderr)[0][1:3] == (4, 21)
    assert "undefined variable 'backup_file'" in result.stderr


def test_name_given_with_extra_vars_is_defined():
    result = runbook("validate", "-e", "backup_file=/tmp/x.dump", NEEDS_INVENTORY)
    assert result.returncode == 0, result.stderr


def test_name_from_inventory_vars_is_defined():
    result = runbook("validate", "-i", FIXTURES / "inventory" / "lab.yaml", NEEDS_INVENTORY)
    assert result.returncode == 0, result.stderr


def test_inventory_problems_are_reported_with_the_runbooks():
    result = runbook("validate", "-i", FIXTURES / "inventory" / "bad.yaml", NEEDS_INVENTORY)
    assert result.returncode == 2
    files = [Path(f).name for f, *_ in headers(result.stderr)]
    assert files == ["bad.yaml", "bad.yaml", "needs_inventory.yaml"]
    assert "unknown key 'target' (did you mean 'targets'?)" in result.stderr


# --- the command itself ---

def test_console_script_runs_validate():
    script = Path(sys.executable).with_name("runbook")
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    result = subprocess.run([str(script), "validate", str(EVERY_MISTAKE)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert len(headers(result.stderr)) == len(EXPECTED)


def test_validate_does_not_import_heavy_client_libraries():
    code = ("import sys\n"
            "from click.testing import CliRunner\n"
            "from engine.cli.app import cli\n"
            f"result = CliRunner().invoke(cli, ['validate', {str(ROOT / 'playbooks')!r}])\n"
            "assert result.exit_code == 0, result.output\n"
            "print(sorted(m for m in ('psycopg', 'boto3', 'botocore', 'kubernetes') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_schema_prints_the_runbook_schema_as_json():
    result = runbook("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Runbook" and "command" in schema["$defs"]["step"]["properties"]


def test_schema_inventory_flag_prints_the_inventory_schema():
    result = runbook("schema", "--inventory")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Inventory" and set(schema["properties"]) == {
        "vars", "groups", "targets", "secrets"}
