"""Property: whatever an editor, a merge conflict or a bad paste does to a valid
runbook, ``runbook validate`` ends with exit 0 or 2 and located messages —
never a traceback, never an internal error."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.cli.app import cli
from engine.source.validate import validate_paths

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "validate"
BASES = [(FIXTURES / "valid" / name).read_text()
         for name in ("every_keyword.yaml", "minimal.yaml", "anchors.yaml")]

# Fragments that matter to YAML, Jinja and the engine's own checks.
FRAGMENTS = ["{", "}", "[", "]", ":", ": ", "- ", "-", '"', "'", "&a ", "*a", "<<: ", "!!int ",
             "!!binary ", "!!python/object:os.system ", "!custom ", "? ", "|", ">", "#", "\n", "  ",
             "\t", "{{", "}}", "{{ x }}", "{%", "%}", "| default(1)", " is ", "__class__", "1e999",
             ".nan", "~", "null", "true", "5x", "90s", "---\n", "...\n", "%YAML 1.2\n", "é", "\ufeff",
             "\x00", "\x85", "\u2028", "\r", "block:", "rescue:", "parallel: 3", "steps:", "id: a",
             "retires: 1", "comand: ls", "loop: ", "when: ", "verify:", "timeout: "]

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12), st.sampled_from(["{{ item }}", "{{ nope", "5x", "1h", "ls"]))
YAML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner,
                                            max_size=3)),
    max_leaves=8)
KEYS = st.one_of(st.sampled_from(["name", "command", "shell", "retries", "timeout", "block", "rescue",
                                  "always", "loop", "when", "register", "id", "vars", "<<", "steps",
                                  "file.checksum", "verify", "parallel", "rto"]),
                 st.text(min_size=1, max_size=10))


def _flow(value) -> str:
    try:
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
    except yaml.YAMLError:
        return "x"


@st.composite
def mutated_runbooks(draw) -> str:
    text = draw(st.sampled_from(BASES))
    for _ in range(draw(st.integers(1, 4))):
        lines = text.split("\n")
        kind = draw(st.sampled_from(["delete", "insert", "swap", "indent", "value", "duplicate", "key"]))
        at = draw(st.integers(0, len(text)))
        row = draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 8)):]
        elif kind == "insert":
            text = text[:at] + draw(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4))) + text[at:]
        elif kind == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[row], lines[other] = lines[other], lines[row]
            text = "\n".join(lines)
        elif kind == "indent":
            lines[row] = " " * draw(st.integers(0, 8)) + lines[row].lstrip(" ")
            text = "\n".join(lines)
        elif kind == "value" and ":" in lines[row]:
            key = lines[row].split(":", 1)[0]
            lines[row] = f"{key}: {_flow(draw(YAML_VALUES))}"
            text = "\n".join(lines)
        elif kind == "duplicate":
            lines.insert(row, lines[row])
            text = "\n".join(lines)
        elif kind == "key":
            indent = len(lines[row]) - len(lines[row].lstrip(" "))
            key = _flow(draw(KEYS))
            lines.insert(row + 1, " " * indent + f"{key}: {_flow(draw(YAML_VALUES))}")
            text = "\n".join(lines)
    return text


_HEADER = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")
_SUMMARY = re.compile(r"^(\d+) problem\(s\) in 1 file\(s\)$")


def _check_output(path: str, text: str, exit_code: int, stdout: str, stderr: str) -> None:
    assert "Traceback" not in stdout + stderr
    assert "internal error" not in stderr
    if exit_code == 0:
        assert stdout.strip() == "ok: 1 runbook(s) valid" and stderr == ""
        return
    lines = stderr.rstrip("\n").split("\n")
    summary = _SUMMARY.match(lines[-1])
    assert summary, lines[-1]
    headers = [line for line in lines[:-1] if not line.startswith("    ")]
    assert len(headers) == int(summary.group(1)) >= 1
    last_line = len(text.splitlines()) + 1
    for header in headers:
        match = _HEADER.match(header)
        assert match and match.group("file") == path, header
        assert 1 <= int(match.group("line")) <= last_line and int(match.group("col")) >= 1, header


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_runbooks())
@example("name: x\nsteps:\n  - command: [ls]\n    when: '{{ x | nope }}'\n")
@example("name: x\ninputs: {1: {}}\nsteps:\n  - command: ['{{ y }}']\n")
@example("name: x\nsteps:\n  - command: !!int ls\n")
@example("name: x\nsteps:\n  - http.request: {url: u, json: {when: tonight at 10}}\n")
def test_validate_never_crashes_on_a_mutated_runbook(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "mutated.yaml")
        Path(path).write_text(text, encoding="utf-8", errors="surrogatepass")
        result = CliRunner().invoke(cli, ["validate", path])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert result.exit_code in (0, 2), result.output
        _check_output(path, text, result.exit_code, result.stdout, result.stderr)
        problems, checked = validate_paths([path], [], [])
        assert checked == 1 and (len(problems) > 0) == (result.exit_code == 2)
