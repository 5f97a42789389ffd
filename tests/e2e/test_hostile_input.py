"""Hostile input to ``runbook validate``: each ends in a clear ``file:line:col``
error, exit 2, quickly, with no traceback and no memory blow-up.

The budget is one second; the tests allow five (shared CI machines) and print
the measured time in any failure message.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

LIMIT_SECONDS = 5.0
MEMORY_LIMIT_MB = 400  # far above what validate needs for any of these (~30-60 MB)
HEADER = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")


def validate(path: Path) -> tuple[subprocess.CompletedProcess, float, int]:
    """Run ``python -m engine validate PATH``; (result, CPU seconds, peak RSS in MB).

    CPU time, not wall time: what validate itself did, however busy the machine is (a
    hang still ends at the 120 s timeout, quadratic work still shows)."""
    code = ("import resource, sys, runpy\n"
            "sys.argv = ['runbook', 'validate', sys.argv[1]]\n"
            "try:\n"
            "    runpy.run_module('engine', run_name='__main__')\n"
            "finally:\n"
            "    usage = resource.getrusage(resource.RUSAGE_SELF)\n"
            "    print(f'peak-rss-mb={usage.ru_maxrss // 1024} '\n"
            "          f'cpu={usage.ru_utime + usage.ru_stime:.3f}', file=sys.stdout)\n")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                            text=True, timeout=120, errors="replace")
    found = re.search(r"peak-rss-mb=(\d+) cpu=([\d.]+)", result.stdout)
    return result, float(found.group(2)), int(found.group(1))


def assert_clear_error(path: Path, *, line: int, col: int | None, message: str) -> str:
    """Exit 2, one located error with this message, fast, small, no traceback."""
    result, elapsed, peak = validate(path)
    stderr = result.stderr
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr[-2000:]
    assert result.returncode == 2, (result.returncode, stderr[-2000:])
    first = stderr.splitlines()[0]
    match = HEADER.match(first)
    assert match, first
    assert match["file"] == str(path)
    assert int(match["line"]) == line, first
    if col is not None:
        assert int(match["col"]) == col, first
    assert message in match["message"], first
    assert stderr.splitlines()[-1] == "1 problem(s) in 1 file(s)"
    assert len(stderr) < 2000, f"{len(stderr)} bytes of error output"
    assert elapsed < LIMIT_SECONDS, f"validate took {elapsed:.2f}s"
    assert peak < MEMORY_LIMIT_MB, f"validate peaked at {peak} MB"
    return stderr


def write(tmp_path: Path, content: str | bytes, name: str = "hostile.yaml") -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# --- not a runbook at all ---

@pytest.mark.parametrize("content, line", [("", 1), ("\n\n", 1), ("# only a comment\n", 1), ("---\n", 2)],
                         ids=["empty", "blank-lines", "comment", "document-marker"])
def test_empty_file_is_refused(tmp_path, content, line):
    assert_clear_error(write(tmp_path, content), line=line, col=1,
                       message="a runbook must be a mapping at the top level, this file is empty")


def test_top_level_list_is_refused(tmp_path):
    assert_clear_error(write(tmp_path, "- name: x\n  command: [ls]\n"), line=1, col=1,
                       message="a runbook must be a mapping at the top level, this file is a list")


def test_top_level_scalar_is_refused(tmp_path):
    assert_clear_error(write(tmp_path, "just some text\n"), line=1, col=1,
                       message="this file is a str")


# --- bytes and characters ---

def test_non_utf8_bytes_are_located(tmp_path):
    path = write(tmp_path, b"name: caf\xe9 recovery\nsteps: []\n")
    stderr = assert_clear_error(path, line=1, col=10, message="file is not valid UTF-8 (byte 0xe9)")
    assert "name: caf\ufffd recovery" in stderr


def test_utf16_file_is_refused_as_not_utf8(tmp_path):
    path = write(tmp_path, "name: x\nsteps: []\n".encode("utf-16"))
    assert_clear_error(path, line=1, col=1, message="file is not valid UTF-8")


def test_binary_file_is_refused(tmp_path):
    path = write(tmp_path, bytes(range(256)) * 40)
    result, elapsed, _ = validate(path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert HEADER.match(result.stderr.splitlines()[0])
    assert elapsed < LIMIT_SECONDS


def test_control_characters_are_refused_and_never_echoed(tmp_path):
    path = write(tmp_path, "name: \x1b[2J\x1b[31mred\nsteps: []\n")
    stderr = assert_clear_error(path, line=1, col=7, message="U+001B is not allowed in YAML")
    assert "\x1b" not in stderr


def test_nul_byte_is_refused(tmp_path):
    assert_clear_error(write(tmp_path, "name: x\nsteps:\x00 []\n"), line=2, col=7,
                       message="U+0000 is not allowed in YAML")


def test_tab_indentation_is_refused_with_advice(tmp_path):
    path = write(tmp_path, "name: x\nsteps:\n\t- command: [ls]\n")
    assert_clear_error(path, line=3, col=1,
                       message="tab character: indent YAML with spaces, not tabs")


def test_key_with_a_line_break_stays_on_one_line(tmp_path):
    path = write(tmp_path, 'name: x\n"evil\\nkey": 1\nsteps: [{command: [ls]}]\n')
    stderr = assert_clear_error(path, line=2, col=1, message="unknown key 'evil\\nkey'")
    assert stderr.splitlines()[1] == '    "evil\\nkey": 1'


# --- structure ---

def test_duplicate_keys_are_an_error(tmp_path):
    path = write(tmp_path, "name: one\nsteps:\n  - command: [ls]\nname: two\n")
    assert_clear_error(path, line=4, col=1, message="duplicate key 'name' (first defined at line 1)")


def test_duplicate_keys_inside_a_step_are_an_error(tmp_path):
    path = write(tmp_path, "name: x\nsteps:\n  - command: [ls]\n    command: [pwd]\n")
    assert_clear_error(path, line=4, col=5, message="duplicate key 'command' (first defined at line 3)")


def test_several_documents_are_refused(tmp_path):
    path = write(tmp_path, "name: a\nsteps: [{command: [ls]}]\n---\nname: b\n")
    assert_clear_error(path, line=3, col=1, message="more than one YAML document in the file")


def test_billion_laughs_alias_bomb_is_refused(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = write(tmp_path, "\n".join(lines) + "\n")
    result, elapsed, peak = validate(path)
    first = result.stderr.splitlines()[0]
    assert result.returncode == 2 and "alias bomb" in first and HEADER.match(first)
    assert "Traceback" not in result.stderr
    assert elapsed < LIMIT_SECONDS and peak < MEMORY_LIMIT_MB, (elapsed, peak)


def test_aliases_nesting_deeper_than_the_limit_are_refused(tmp_path):
    lines = ["name: x", "vars:", "  b0: &b0 [{command: [ls]}]"]
    lines += [f"  b{i}: &b{i} [{{block: *b{i - 1}}}]" for i in range(1, 250)]
    lines.append("steps: *b249")
    path = write(tmp_path, "\n".join(lines) + "\n")
    assert_clear_error(path, line=101, col=22, message="nesting is deeper than 200 levels (through aliases)")


# --- 10,000 levels deep ---

DEPTH = 10_000


def test_ten_thousand_nested_flow_lists_are_refused(tmp_path):
    path = write(tmp_path, "[" * DEPTH + "]" * DEPTH + "\n")
    assert_clear_error(path, line=1, col=202, message="nesting is deeper than 200 levels")


def test_ten_thousand_nested_flow_mappings_are_refused(tmp_path):
    path = write(tmp_path, "{a: " * DEPTH + "1" + "}" * DEPTH + "\n")
    assert_clear_error(path, line=1, col=None, message="nesting is deeper than 200 levels")


def test_ten_thousand_nested_block_lists_are_refused(tmp_path):
    path = write(tmp_path, "- " * DEPTH + "x\n")
    assert_clear_error(path, line=1, col=None, message="nesting is deeper than 200 levels")


def test_deeply_indented_block_mappings_are_refused_at_the_limit(tmp_path):
    path = write(tmp_path, "".join(" " * i + "k:\n" for i in range(1_000)))
    assert_clear_error(path, line=201, col=201, message="nesting is deeper than 200 levels")


def test_ten_thousand_indented_levels_are_refused_by_size_before_parsing(tmp_path):
    # 10,000 levels of block indentation cannot be written in fewer than 50 MB.
    path = write(tmp_path, "".join(" " * i + "k:\n" for i in range(DEPTH)))
    assert path.stat().st_size > 49_000_000
    assert_clear_error(path, line=1, col=1, message="file is larger than 10 MB")


def test_deeply_nested_template_is_an_error_not_a_crash(tmp_path):
    path = write(tmp_path, 'name: x\nvars: {x: 1}\nsteps:\n  - command: ["{{ '
                 + "(" * 5000 + "x" + ")" * 5000 + ' }}"]\n')
    assert_clear_error(path, line=4, col=15, message="template is nested too deeply")


def test_deeply_nested_condition_is_an_error_not_a_crash(tmp_path):
    path = write(tmp_path, "name: x\nvars: {x: 1}\nsteps:\n  - command: [ls]\n    when: \""
                 + "not " * 5000 + 'x"\n')
    assert_clear_error(path, line=5, col=11, message="template is nested too deeply")


# --- size ---

def test_endless_input_is_cut_off(tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    result, elapsed, peak = validate(Path("/dev/zero"))
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == ("/dev/zero:1:1: file is larger than 10 MB; "
                                             "a runbook or inventory is never that big")
    assert elapsed < LIMIT_SECONDS and peak < MEMORY_LIMIT_MB, (elapsed, peak)


def test_a_five_megabyte_line_is_windowed_in_the_message(tmp_path):
    path = write(tmp_path, "name: " + "x" * 5_000_000 + "\nsteps: 5\n")
    result, elapsed, _ = validate(path)
    assert result.returncode == 2 and elapsed < LIMIT_SECONDS
    assert result.stderr.splitlines()[0].endswith("steps: 5 is not of type 'array'")
    assert len(result.stderr) < 2000


def test_ten_thousand_errors_are_all_reported_quickly(tmp_path):
    path = write(tmp_path, "name: many\nsteps:\n" + "  - comand: [ls]\n" * 10_000)
    result, elapsed, peak = validate(path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == "10000 problem(s) in 1 file(s)"
    assert elapsed < LIMIT_SECONDS, f"validate took {elapsed:.2f}s"
    assert peak < MEMORY_LIMIT_MB, peak
