"""The picture in DESIGN.md stays true: imports only point down the stage order, reporters
observe events only, and no module imports itself back (lazy imports count too)."""
from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[2] / "engine"

#: higher stages may import lower ones, never the reverse (DESIGN.md, "Names and layout")
STAGES = {
    "__main__": 9, "cli": 8, "run": 7, "guide": 6, "reports": 6, "lab": 6, "reporters": 6,
    "source": 5, "actions": 4, "journal": 3, "connections": 2,
}
LEAF = 1  # modules directly in engine/: errors, templating, durations, secrets, ...
#: reporters are observers: the events and the leaves, nothing of the run
REPORTERS_MAY_IMPORT = ("engine.journal.events",)


def modules() -> dict[str, Path]:
    found = {}
    for path in ENGINE.rglob("*.py"):
        parts = path.relative_to(ENGINE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every engine module ``name`` imports, at the top or inside a function."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        out |= {_resolve(t, known) for t in targets if t.startswith("engine")} - {None}
    out.discard(name)
    return out


def _resolve(target: str, known: set[str]) -> str | None:
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def stage(name: str) -> int:
    parts = name.split(".")
    if len(parts) == 1:
        return LEAF
    return STAGES.get(parts[1], LEAF)


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def test_imports_only_point_down_the_stage_order():
    upward = []
    for name, targets in graph().items():
        for target in targets:
            if _package(target) == _package(name) or stage(target) == LEAF:
                continue  # inside one's own package, or a leaf
            if stage(target) >= stage(name):
                upward.append(f"{name} -> {target}")
    assert sorted(upward) == []


def test_reporters_observe_events_only():
    wrong = [f"{name} -> {target}" for name, targets in graph().items()
             if name.startswith("engine.reporters") for target in targets
             if stage(target) != LEAF and target not in REPORTERS_MAY_IMPORT
             and not target.startswith("engine.reporters")]
    assert wrong == []


def test_no_import_cycles():
    edges = graph()
    cycles = []

    def visit(node: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        for target in sorted(edges.get(node, ())):
            if target in on_path:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in done:
                on_path.add(target)
                visit(target, path + [target], on_path, done)
                on_path.discard(target)
        done.add(node)

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            visit(start, [start], {start}, done)
    assert cycles == []


def _package(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2])
