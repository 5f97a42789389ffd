"""Durations: what ``timeout``, ``delay``, ``rto`` ... accept, in the parser and the schema alike."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.durations import DURATION_PATTERN, format_duration, parse_duration


@pytest.mark.parametrize("value, seconds", [
    (90, 90.0),
    (0, 0.0),
    (1.5, 1.5),
    ("90", 90.0),
    ("2.5", 2.5),
    ("90s", 90.0),
    ("1.5s", 1.5),
    ("15m", 900.0),
    ("1h", 3600.0),
    ("1h30m", 5400.0),
    ("1h 30m", 5400.0),
    ("2d", 172800.0),
    ("1d2h3m4s", 93784.0),
    ("250ms", 0.25),
    ("1m500ms", 60.5),
    (" 45s ", 45.0),
])
def test_parse_duration_accepts(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [
    "5x", "", "   ", "s", "m", "90 seconds", "1.5m", "15M", "1h30", "30m1h", "-5", "5s5s",
    -1, -0.5, True, False, None, [], "1e3",
])
def test_parse_duration_refuses(value):
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    message = str(caught.value)
    assert "duration" in message


def test_negative_number_names_the_problem():
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration(-3)


def test_refusal_shows_examples_of_the_format():
    with pytest.raises(ValueError) as caught:
        parse_duration("5x")
    assert "90s" in str(caught.value) and "1h30m" in str(caught.value) and "'5x'" in str(caught.value)


_DURATION_TEXT = st.text(alphabet="0123456789.dhms ", max_size=10)


@settings(max_examples=300, deadline=None)
@given(_DURATION_TEXT)
def test_schema_pattern_and_parser_agree_on_every_string(text):
    """The JSON Schema (what editors check) and the parser (what runs) accept the same strings."""
    schema_ok = re.search(DURATION_PATTERN, text) is not None
    try:
        parse_duration(text)
        parser_ok = True
    except ValueError:
        parser_ok = False
    assert schema_ok == parser_ok, text


@pytest.mark.parametrize("text", ["", "  ", "90", "1h30m", "250ms", "5x"])
def test_schema_pattern_examples(text):
    expected = text.strip() not in ("", "5x")
    assert (re.search(DURATION_PATTERN, text) is not None) is expected


@pytest.mark.parametrize("seconds, text", [
    (None, "-"), (0.4, "0.4s"), (12, "12s"), (185, "3m05s"), (3720, "1h02m"), (5400, "1h30m"),
])
def test_format_duration_is_short(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["90s", "15m", "1h30m", "2d"])
def test_format_of_a_parsed_duration_round_trips_in_seconds(text):
    seconds = parse_duration(text)
    assert parse_duration(format_duration(seconds)) == seconds
