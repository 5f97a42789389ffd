"""The YAML loader: values that remember file:line:col, and hostile input refused
with a position. Also how a located error renders (quoted line, caret)."""
from __future__ import annotations

import textwrap

import pytest

from engine.source import loader
from engine.errors import Pos, SourceError, SourceErrors
from engine.source.loader import MAX_DEPTH, load_file, load_text


def load(text: str, name: str = "rb.yaml"):
    return load_text(textwrap.dedent(text).lstrip("\n"), name)


def error_of(text: str) -> SourceError:
    with pytest.raises(SourceError) as caught:
        load(text)
    return caught.value


# --- positions ---

RUNBOOK = """
name: Restore
steps:
  - name: Stop the app
    command: [systemctl, stop, app]
    timeout: 5m
  - shell: |
      echo one
      echo two
    vars: {db: primary, port: 5432}
"""


def test_every_mapping_list_and_scalar_has_a_position():
    doc = load(RUNBOOK)
    assert doc.pos(()) == Pos("rb.yaml", 1, 1)
    assert doc.pos(("name",)) == Pos("rb.yaml", 1, 7)
    assert doc.pos(("steps",)) == Pos("rb.yaml", 3, 3)          # the list
    assert doc.pos(("steps", 0)) == Pos("rb.yaml", 3, 5)        # a mapping in it
    assert doc.pos(("steps", 0, "command")) == Pos("rb.yaml", 4, 14)   # a flow list
    assert doc.pos(("steps", 0, "command", 2)) == Pos("rb.yaml", 4, 32)  # a scalar in it
    assert doc.pos(("steps", 0, "timeout")) == Pos("rb.yaml", 5, 14)


def test_keys_and_values_have_separate_positions():
    doc = load(RUNBOOK)
    assert doc.pos(("steps", 0, "timeout"), key=True) == Pos("rb.yaml", 5, 5)
    assert doc.pos(("steps", 0, "timeout")) == Pos("rb.yaml", 5, 14)
    assert doc.pos(("steps", 1, "vars", "port"), key=True) == Pos("rb.yaml", 9, 25)
    assert doc.pos(("steps", 1, "vars", "port")) == Pos("rb.yaml", 9, 31)


def test_block_scalar_is_located_at_its_indicator():
    doc = load(RUNBOOK)
    assert doc.pos(("steps", 1, "shell")) == Pos("rb.yaml", 6, 12)
    assert doc.data["steps"][1]["shell"] == "echo one\necho two\n"


def test_values_are_plain_python_types():
    doc = load("""
        a: 1
        b: 1.5
        c: true
        d: ~
        e: "007"
        f: [1, two]
        g: {h: i}
    """)
    assert doc.data == {"a": 1, "b": 1.5, "c": True, "d": None, "e": "007",
                        "f": [1, "two"], "g": {"h": "i"}}
    assert type(doc.data) is dict and type(doc.data["f"]) is list


def test_pos_of_an_unknown_path_falls_back_to_the_nearest_parent():
    doc = load(RUNBOOK)
    assert doc.pos(("steps", 0, "no-such-key", 3)) == doc.pos(("steps", 0))
    assert doc.pos(("steps", 0, "no-such-key"), key=True) == doc.pos(("steps", 0))
    assert doc.pos(("nothing",)) == Pos("rb.yaml", 1, 1)


def test_error_quotes_the_offending_line():
    doc = load(RUNBOOK)
    error = doc.error(("steps", 0, "timeout"), "bad timeout")
    assert str(error) == "rb.yaml:5:14: bad timeout"
    assert error.source_line == "    timeout: 5m"


def test_columns_count_characters_not_bytes():
    doc = load('name: "é ü ö"\nowner: ß\n')
    assert doc.pos(("owner",)) == Pos("rb.yaml", 2, 8)
    error = error_of("name: éé: [\n")
    assert (error.pos.line, error.pos.col) == (1, 9)


def test_a_byte_order_mark_is_ignored(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfname: x\n")
    assert load_file(path).data == {"name": "x"}


def test_an_empty_file_is_none_with_a_root_position():
    doc = load("")
    assert doc.data is None
    assert doc.pos(()) == Pos("rb.yaml", 1, 1)


# --- merge keys and aliases ---

def test_merge_key_copies_keys_that_are_not_set_explicitly():
    doc = load("""
        defaults: &defaults {retries: 2, delay: 1s}
        first:
          <<: *defaults
          retries: 5
        second:
          retries: 7
          <<: *defaults
    """)
    assert doc.data["first"] == {"retries": 5, "delay": "1s"}
    assert doc.data["second"] == {"retries": 7, "delay": "1s"}


def test_merge_key_takes_a_list_and_the_first_mapping_wins():
    doc = load("""
        a: &a {x: 1, y: 1}
        b: &b {y: 2, z: 2}
        c:
          <<: [*a, *b]
    """)
    assert doc.data["c"] == {"x": 1, "y": 1, "z": 2}


def test_merged_keys_are_located_at_the_merge():
    doc = load("""
        defaults: &defaults
          retries: 2
        step:
          name: x
          <<: *defaults
    """)
    assert doc.pos(("step", "retries"), key=True) == Pos("rb.yaml", 5, 3)
    assert doc.pos(("step", "retries")) == Pos("rb.yaml", 5, 7)


def test_merge_key_with_a_scalar_is_an_error():
    error = error_of("""
        a: &a [1, 2]
        b:
          <<: *a
    """)
    assert error.pos == Pos("rb.yaml", 3, 7)
    assert "merge key '<<' takes a mapping" in error.message


def test_alias_value_is_located_at_the_alias():
    doc = load("""
        a: &anchor [1, 2]
        b: *anchor
    """)
    assert doc.data["b"] == [1, 2]
    assert doc.pos(("b",)) == Pos("rb.yaml", 2, 4)


def test_unknown_alias_is_an_error_at_the_alias():
    error = error_of("a: *nowhere\n")
    assert error.pos == Pos("rb.yaml", 1, 4)
    assert "nowhere" in error.message


# --- refused input ---

def test_duplicate_key_is_an_error_naming_the_first_line():
    error = error_of("""
        name: one
        steps: []
        name: two
    """)
    assert error.pos == Pos("rb.yaml", 3, 1)
    assert error.message == "duplicate key 'name' (first defined at line 1)"
    assert error.source_line == "name: two"


def test_duplicate_key_in_a_nested_flow_mapping_is_an_error():
    error = error_of("steps:\n  - {command: ls, command: pwd}\n")
    assert error.pos == Pos("rb.yaml", 2, 19)
    assert "duplicate key 'command'" in error.message


def test_an_explicit_key_overriding_a_merged_one_is_not_a_duplicate():
    doc = load("""
        d: &d {a: 1}
        m:
          <<: *d
          a: 2
    """)
    assert doc.data["m"] == {"a": 2}


def test_more_than_one_document_is_an_error_at_the_second():
    error = error_of("""
        name: one
        ---
        name: two
    """)
    assert error.pos == Pos("rb.yaml", 2, 1)
    assert "more than one YAML document" in error.message


def test_one_document_with_explicit_markers_is_fine():
    assert load("---\nname: one\n...\n").data == {"name": "one"}


def test_syntax_error_is_located_and_quoted():
    error = error_of("""
        name: x
        steps:
          - command: [ls
          - shell: pwd
    """)
    assert error.message.startswith("YAML syntax error: ")
    assert error.pos.line in (4, 5)
    assert error.source_line


@pytest.mark.parametrize("text, line", [
    ("name: x\nsteps:\n\t- command: ls\n", 3),
    ("name: x\n\tsteps: []\n", 2),
    ("steps:\n  - command:\n\t- ls\n", 3),
    ("name: x\nsteps:\n  - command: [ls]\n\t\n", 4),
])
def test_tab_indentation_says_to_use_spaces(text, line):
    with pytest.raises(SourceError) as caught:
        load_text(text, "rb.yaml")  # not dedented: dedent would drop a whitespace-only line
    error = caught.value
    assert error.pos.line == line
    assert error.message == "YAML syntax error: tab character: indent YAML with spaces, not tabs"


def test_a_tab_inside_a_line_is_allowed():
    assert load("name:\tx\n").data == {"name": "x"}


def test_non_utf8_bytes_are_located_by_line_and_character(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: x\nowner: é".encode() + b"\xff\xfe\n")
    with pytest.raises(SourceError) as caught:
        load_file(path)
    error = caught.value
    assert error.pos == Pos(str(path), 2, 9)
    assert error.message == "file is not valid UTF-8 (byte 0xff)"
    assert error.source_line.startswith("owner: é")


def test_missing_file_is_a_located_error(tmp_path):
    with pytest.raises(SourceError) as caught:
        load_file(tmp_path / "absent.yaml")
    assert caught.value.pos.line == 1
    assert "cannot read file" in caught.value.message


def test_a_file_larger_than_the_limit_is_refused_without_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "big.yaml"
    path.write_text("name: x\n" + "# padding\n" * 200)
    with pytest.raises(SourceError) as caught:
        load_file(path)
    assert caught.value.pos == Pos(str(path), 1, 1)
    assert "larger than" in caught.value.message


@pytest.mark.parametrize("text, fragment", [
    ("a: !!int abc\n", "'abc' is not a valid !!int"),
    ("a: !!float x\n", "'x' is not a valid !!float"),
    ("a: !!timestamp 2001-02-30\n", "is not a valid !!timestamp"),
    ("a: !!bool maybe\n", "is not a valid !!bool"),
    ("a: !!python/object:os.system ls\n", "bad value"),
    ("a: !custom x\n", "bad value"),
])
def test_values_that_cannot_hold_their_tag_are_errors(text, fragment):
    error = error_of(text)
    assert error.pos == Pos("rb.yaml", 1, 4)
    assert fragment in error.message


def test_complex_mapping_key_is_refused():
    error = error_of("? [a, b]\n: c\n")
    assert "mapping key must be a plain value" in error.message


def test_nesting_deeper_than_the_limit_is_refused():
    depth = MAX_DEPTH + 5
    error = error_of("[" * depth + "]" * depth)
    assert error.pos.line == 1
    assert error.message == f"nesting is deeper than {MAX_DEPTH} levels"


def test_nesting_just_under_the_limit_loads():
    depth = MAX_DEPTH - 1
    data = load("[" * depth + "]" * depth).data
    for _ in range(depth - 1):
        data = data[0]
    assert data == []


def test_alias_bomb_is_refused_at_the_alias_that_crosses_the_budget():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    error = error_of("\n".join(lines) + "\n")
    assert "alias bomb" in error.message
    assert 3 <= error.pos.line <= 9


def test_aliases_cannot_nest_deeper_than_the_limit():
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 300)]
    error = error_of("\n".join(lines) + "\n")
    assert error.message == f"nesting is deeper than {MAX_DEPTH} levels (through aliases)"
    assert error.pos.line == MAX_DEPTH


def test_a_few_aliases_of_a_large_anchor_are_fine():
    doc = load("big: &big [" + ",".join(["x"] * 1000) + "]\ncopies: [*big, *big, *big]\n")
    assert len(doc.data["copies"]) == 3 and doc.data["copies"][2] is doc.data["big"]


# --- rendering of located errors ---

def test_error_renders_the_line_and_a_caret_under_the_column():
    error = SourceError(Pos("rb.yaml", 3, 14), "bad timeout", "    timeout: 5x")
    assert error.render() == ("rb.yaml:3:14: bad timeout\n"
                              "        timeout: 5x\n"
                              "                 ^")


def test_error_without_a_source_line_is_one_line():
    assert SourceError(Pos("rb.yaml", 1, 1), "empty").render() == "rb.yaml:1:1: empty"


def test_caret_accounts_for_tabs_in_the_quoted_line():
    rendered = SourceError(Pos("f", 1, 3), "x", "\t\tkey: v").render()
    line, caret = rendered.splitlines()[1:]
    assert "\t" not in line
    assert caret.index("^") == 4 + 2


def test_long_lines_are_windowed_around_the_column():
    source = "x" * 300 + "HERE" + "y" * 300
    rendered = SourceError(Pos("f", 1, 301), "here", source).render()
    _, line, caret = rendered.splitlines()
    assert line.startswith("    …") and line.endswith("…")
    assert len(line) < 120
    assert line[caret.index("^"):].startswith("HERE")


def test_long_line_window_at_the_start_and_end():
    source = "START" + "x" * 400 + "END"
    start = SourceError(Pos("f", 1, 1), "m", source).render().splitlines()
    assert start[1].startswith("    START") and start[1].endswith("…")
    assert start[1][start[2].index("^"):].startswith("START")
    end = SourceError(Pos("f", 1, len(source) - 2), "m", source).render().splitlines()
    assert end[1].startswith("    …") and end[1].endswith("END")
    assert end[1][end[2].index("^"):].startswith("END")


def test_many_errors_render_sorted_by_position():
    errors = SourceErrors([
        SourceError(Pos("b.yaml", 1, 1), "third"),
        SourceError(Pos("a.yaml", 9, 1), "second"),
        SourceError(Pos("a.yaml", 2, 5), "first"),
    ])
    assert errors.render().splitlines() == ["a.yaml:2:5: first", "a.yaml:9:1: second",
                                            "b.yaml:1:1: third"]
    assert errors.exit_code == 2
