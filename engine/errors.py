"""Errors that the command line turns into one clear message and an exit code.

Each class carries its exit code (as click's exceptions do), so the CLI needs
no table of its own. User errors print one line with a location; an internal
crash is a different thing and is handled by the CLI's crash handler.
"""
from __future__ import annotations

from typing import NamedTuple

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_PAUSED = 3
EXIT_ABORTED = 4
EXIT_HELD = 5
EXIT_INTERRUPTED = 130


class Pos(NamedTuple):
    """A place in a source file (1-based line and column). A tuple: cheap, ordered."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class EngineError(Exception):
    """Base of every error the user is meant to read. ``exit_code`` tells the CLI what to exit with."""

    exit_code = EXIT_FAILED

    def render(self) -> str:
        return f"error: {self}"


class SourceError(EngineError):
    """A problem at a place in a runbook or inventory file."""

    exit_code = EXIT_INVALID

    def __init__(self, pos: Pos, message: str, source_line: str = "") -> None:
        super().__init__(f"{pos}: {message}")
        self.pos = pos
        self.message = message
        self.source_line = source_line

    def render(self) -> str:
        text = _one_line(f"{self.pos}: {self.message}")
        if self.source_line.strip():
            line, col = _window(self.source_line.rstrip(), max(self.pos.col, 1) - 1)
            text += f"\n    {line}\n    {' ' * col}^"
        return text


def _one_line(text: str) -> str:
    """Escape line breaks and control characters that a message quotes from the file
    (a key such as ``"a\\nb"``): every error stays one ``file:line:col: message`` line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _window(line: str, col: int, width: int = 100) -> tuple[str, int]:
    """Cut a long source line to ``width`` characters around ``col``."""
    # One visible character per source character keeps the caret aligned; control
    # characters (ESC ...) from a hostile file must not reach the terminal.
    if not line.isprintable():
        line = "".join(" " if c == "\t" else c if c.isprintable() else "\ufffd" for c in line)
    if len(line) <= width:
        return line, col
    start = max(0, min(col - width // 2, len(line) - width))
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + width < len(line) else ""
    return prefix + line[start:start + width] + suffix, col - start + len(prefix)


class SourceErrors(EngineError):
    """Several ``SourceError`` at once: validation reports every problem, not just the first."""

    exit_code = EXIT_INVALID

    def __init__(self, errors: list[SourceError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.pos, e.message))
        super().__init__("\n".join(str(e) for e in self.errors))

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)


class UsageError(EngineError):
    """Bad command-line input: missing input, bad -e value, missing secret source."""

    exit_code = EXIT_INVALID


class RunHeld(EngineError):
    """Another process holds the run."""

    exit_code = EXIT_HELD


class RunNotFound(EngineError):
    exit_code = EXIT_INVALID


class ActionError(Exception):
    """A step failed for a reason the operator can act on (bad path, rc != 0, ...).

    Raised by actions and by the connections they use. The message is shown as
    the step's failure; it must never contain secrets (the redactor masks known
    secrets anyway, but do not rely on it).
    """


class LabError(EngineError):
    """The lab could not be started, stopped or inspected; the message says why."""

    exit_code = EXIT_FAILED


class KnownOnlyAtRunTime(ActionError):
    """A plan needs a value only the real run will produce: the plan says so (it is no
    finding — nothing is wrong yet)."""
