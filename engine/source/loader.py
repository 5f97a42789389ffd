"""YAML -> plain Python values, plus a table of where every value came from.

The values are ordinary dicts, lists and scalars (fast to use everywhere); the
``Document.positions`` table maps each value's path (a tuple of keys and list
indexes) to its (line, col) and ``Document.key_positions`` maps a mapping entry's
path to the position of its *key*. Errors anywhere later in the pipeline use
the path to point at ``file:line:col``.

The parser is libyaml's event stream when available; nodes are built here so
that hostile input is refused with a position instead of a hang or a crash:
duplicate keys, nesting deeper than ``MAX_DEPTH``, alias expansion beyond
``MAX_ALIAS_NODES`` ("billion laughs"), non-UTF-8 bytes and tabs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from yaml import events as ev

from engine.errors import Pos, SourceError
from engine.memory import paused_gc

MAX_DEPTH = 200
MAX_ALIAS_NODES = 100_000
MAX_FILE_BYTES = 10 * 1024 * 1024  # far beyond any runbook; refuses /dev/zero and 100 MB bombs

_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_scalar_constructor = yaml.constructor.SafeConstructor()
_resolver = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass
class Document:
    """One loaded YAML file: its values and where each of them is."""

    path: str
    data: Any
    text: str
    #: (line, col) of each value / mapping key, by path; ``pos()`` makes them ``Pos``
    positions: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[tuple, tuple[int, int]] = field(default_factory=dict)

    def pos(self, path: tuple, *, key: bool = False) -> Pos:
        """Best known position for ``path``: the value's (or key's), else its nearest parent's."""
        table = self.key_positions if key else self.positions
        probe = tuple(path)
        while probe:
            if probe in table:
                return Pos(self.path, *table[probe])
            if key and probe in self.positions:
                return Pos(self.path, *self.positions[probe])
            probe = probe[:-1]
        return Pos(self.path, *self.positions.get((), (1, 1)))

    def error(self, path: tuple, message: str, *, key: bool = False) -> SourceError:
        """A ``SourceError`` located at ``path``, quoting the source line."""
        return SourceError(self.pos(path, key=key), message, self.line(self.pos(path, key=key)))

    def line(self, pos: Pos) -> str:
        lines = self.lines
        return lines[pos.line - 1] if 0 < pos.line <= len(lines) else ""

    @cached_property
    def lines(self) -> list[str]:
        # Split once: a file with thousands of errors must not be split per error.
        return self.text.splitlines()


def load_file(path: str | Path, *, scalar_positions: bool = True) -> Document:
    """Read and parse a YAML file. Raises ``SourceError`` for unreadable or bad input.

    ``scalar_positions=False`` records positions of mappings and lists only
    (about a third faster): enough to place steps, for a file already validated.
    """
    name = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SourceError(Pos(name, 1, 1), f"cannot read file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SourceError(Pos(name, 1, 1), f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB;"
                                           " a runbook or inventory is never that big")
    return load_text(_decode(raw, name), name, scalar_positions=scalar_positions)


def load_text(text: str, name: str = "<string>", *, scalar_positions: bool = True) -> Document:
    """Parse YAML text into a ``Document``."""
    doc = Document(name, None, text)
    try:
        try:
            doc.data = _build(doc, text, _Parser, scalar_positions)
        except yaml.YAMLError as exc:
            if _Parser is yaml.SafeLoader or "nesting depth" not in str(exc):
                raise
            # libyaml >= 0.2.5 (PyYAML 6.0.4 wheels) refuses depth 1,000 while it scans
            # ahead, before the builder meets level MAX_DEPTH + 1. The pure-Python parser
            # has no such limit, so the builder gives the same error at the same position
            # whichever PyYAML is installed; only such hostile files pay for the slower parse.
            doc.data = _build(doc, text, yaml.SafeLoader, scalar_positions)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = Pos(name, mark.line + 1, mark.column + 1) if mark else Pos(name, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if _is_tab_problem(doc.line(pos), pos.col, problem):
            problem = "tab character: indent YAML with spaces, not tabs"
        raise SourceError(pos, f"YAML syntax error: {problem}", doc.line(pos)) from None
    except yaml.reader.ReaderError as exc:
        # libyaml counts the offset in UTF-8 bytes, the pure-Python reader in characters.
        pos = _offset_pos(doc, exc.position, in_bytes=exc.encoding != "unicode")
        code = f"U+{exc.character:04X}" if isinstance(exc.character, int) else "character"
        raise SourceError(pos, f"YAML syntax error: {code} is not allowed in YAML "
                               "(control or special character)", doc.line(pos)) from None
    except yaml.YAMLError as exc:
        raise SourceError(Pos(name, 1, 1), f"YAML syntax error: {exc}".splitlines()[0]) from None
    return doc


def _build(doc: Document, text: str, parser, scalar_positions: bool) -> Any:
    builder = _Builder(doc, scalar_positions)
    with paused_gc():
        return builder.build(yaml.parse(text, Loader=parser))


def _offset_pos(doc: Document, offset: int, *, in_bytes: bool) -> Pos:
    text = doc.text
    if in_bytes:
        text = text.encode("utf-8", "surrogatepass")[:offset].decode("utf-8", "replace")
    # The sentinel keeps a trailing line break from being lost and makes col 1-based.
    rows = (text[:offset] + "x").splitlines()
    return Pos(doc.path, len(rows), len(rows[-1]))


def _decode(raw: bytes, name: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        line_start = before.rfind(b"\n") + 1
        # Columns count characters, as everywhere else, not bytes.
        col = len(raw[line_start:exc.start].decode("utf-8", "replace")) + 1
        end = raw.find(b"\n", exc.start)
        quoted = raw[line_start:end if end >= 0 else len(raw)].decode("utf-8", "replace")
        raise SourceError(Pos(name, line, col),
                          f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})", quoted) from None
    return text.removeprefix("\ufeff")


def _is_tab_problem(line: str, col: int, problem: str) -> bool:
    """libyaml words tab errors several ways; the character at the mark tells for sure."""
    return "'\\t'" in problem or "tab character" in problem or line[col - 1:col] == "\t"


def _mark(event) -> tuple[int, int]:
    """1-based (line, col) of an event: stored per node, so kept as a bare tuple."""
    mark = event.start_mark
    return mark.line + 1, mark.column + 1


def _pos(doc: Document, event) -> Pos:
    mark = event.start_mark
    return Pos(doc.path, mark.line + 1, mark.column + 1)


class _Builder:
    """Builds values from parser events, recording positions as it goes."""

    def __init__(self, doc: Document, scalar_positions: bool = True) -> None:
        self.doc = doc
        self.scalar_positions = scalar_positions
        self.anchors: dict[str, tuple[Any, int, int]] = {}  # value, node count, height
        self.alias_nodes = 0
        self.events = None

    def build(self, events) -> Any:
        self.events = iter(events)
        data = None
        documents = 0
        for event in self.events:
            if isinstance(event, ev.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise self._error(event, "more than one YAML document in the file")
                data = self._value(next(self.events), (), 0)
        return data

    def _error(self, event, message: str) -> SourceError:
        pos = _pos(self.doc, event)
        return SourceError(pos, message, self.doc.line(pos))

    def _value(self, event, path: tuple | None, depth: int) -> Any:
        """Build the value that starts with ``event``; ``path`` None means a mapping key."""
        if depth > MAX_DEPTH:
            raise self._error(event, f"nesting is deeper than {MAX_DEPTH} levels")
        if path is not None and (self.scalar_positions or not isinstance(event, ev.ScalarEvent)):
            self.doc.positions[path] = _mark(event)
        if isinstance(event, ev.AliasEvent):
            return self._alias(event, depth)
        # Track how deep this node goes, so an alias of it can be checked against MAX_DEPTH.
        size_before, deepest_outside, self._deepest = self._node_count, self._deepest, depth
        if isinstance(event, ev.ScalarEvent):
            value = self._scalar(event)
        elif isinstance(event, ev.SequenceStartEvent):
            value = self._sequence(path, depth)
        elif isinstance(event, ev.MappingStartEvent):
            value = self._mapping(path, depth)
        else:  # pragma: no cover - the parser guarantees node events here
            raise self._error(event, f"unexpected YAML event {type(event).__name__}")
        height, self._deepest = self._deepest - depth, max(deepest_outside, self._deepest)
        self._node_count += 1
        if event.anchor:
            self.anchors[event.anchor] = (value, self._node_count - size_before, height)
        return value

    _node_count = 0
    _deepest = 0

    def _alias(self, event, depth: int) -> Any:
        if event.anchor not in self.anchors:
            raise self._error(event, f"unknown alias *{event.anchor}")
        value, size, height = self.anchors[event.anchor]
        # Aliases nest without new events: [*a] around [*b] around ... is as deep as [[[...]]].
        if depth + height > MAX_DEPTH:
            raise self._error(event, f"nesting is deeper than {MAX_DEPTH} levels (through aliases)")
        self._deepest = max(self._deepest, depth + height)
        # An alias re-uses the anchored value; what we bound is how many nodes
        # consumers would walk if they expanded it, which is what a
        # "billion laughs" document inflates.
        self.alias_nodes += size
        if self.alias_nodes > MAX_ALIAS_NODES:
            raise self._error(event, f"aliases expand to more than {MAX_ALIAS_NODES} nodes "
                                     "(a YAML alias bomb?)")
        self._node_count += size
        return value

    def _scalar(self, event) -> Any:
        if event.tag is None or event.tag == "!":
            if not event.implicit[0]:
                return event.value  # quoted: always a string, no resolving needed
            tag = _resolver.resolve(yaml.ScalarNode, event.value, event.implicit)
            if tag == _STR_TAG:
                return event.value  # the common case, without building a node
        else:
            tag = event.tag
        if tag == "tag:yaml.org,2002:merge":
            return "<<"
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        try:
            return _scalar_constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise self._error(event, f"bad value: {exc.problem}") from None
        except (ValueError, LookupError, AttributeError, TypeError, OverflowError):
            # An explicit tag on a value it cannot hold (``!!int abc``,
            # ``!!timestamp 2001-02-30``): PyYAML's constructors raise plain errors.
            short = tag.replace("tag:yaml.org,2002:", "!!")
            raise self._error(event, f"bad value: {event.value!r} is not a valid {short}") from None

    def _sequence(self, path: tuple | None, depth: int) -> list:
        items: list = []
        for event in self.events:
            if isinstance(event, ev.SequenceEndEvent):
                return items
            child = None if path is None else path + (len(items),)
            items.append(self._value(event, child, depth + 1))
        return items  # pragma: no cover - the parser always closes sequences

    def _mapping(self, path: tuple | None, depth: int) -> dict:
        mapping: dict = {}
        merged: set = set()
        for event in self.events:
            if isinstance(event, ev.MappingEndEvent):
                return mapping
            key_pos = _mark(event)
            key = self._value(event, None, depth + 1)
            if isinstance(key, (dict, list)):
                raise self._error(event, "a mapping key must be a plain value")
            if path is None:
                raise self._error(event, "a mapping key must be a plain value")
            if key == "<<" and isinstance(event, ev.ScalarEvent):
                merged |= self._merge(mapping, path, depth, key_pos)
                continue
            if key in mapping and key not in merged:
                first = self.doc.key_positions.get(path + (key,))
                where = f" (first defined at line {first[0]})" if first else ""
                raise self._error(event, f"duplicate key {key!r}{where}")
            merged.discard(key)
            if self.scalar_positions:
                self.doc.key_positions[path + (key,)] = key_pos
            mapping[key] = self._value(next(self.events), path + (key,), depth + 1)
        return mapping  # pragma: no cover

    def _merge(self, mapping: dict, path: tuple, depth: int, key_pos: tuple[int, int]) -> set:
        """YAML merge keys (``<<: *defaults``): copy keys not set explicitly.

        Returns the keys it added, which a later explicit key may override.
        """
        value = self._value(next(self.events), path + ("<<",), depth + 1)
        sources = value if isinstance(value, list) else [value]
        added = set()
        for source in sources:
            if not isinstance(source, dict):
                pos = self.doc.pos(path + ("<<",))
                raise SourceError(pos, "a merge key '<<' takes a mapping or a list of mappings",
                                  self.doc.line(pos))
            for key, item in source.items():
                if key not in mapping:
                    mapping[key] = item
                    added.add(key)
                    # A merged key is reported where it was merged in (the ``<<`` line).
                    self.doc.key_positions[path + (key,)] = key_pos
                    self.doc.positions[path + (key,)] = self.doc.positions[path + ("<<",)]
        return added
