"""``runbook validate``: every problem in every file, none of them fatal to the others."""
from __future__ import annotations

from pathlib import Path

from engine.source.compiler import load_runbook
from engine.errors import Pos, SourceError, SourceErrors, UsageError


def runbook_files(paths: list[str]) -> list[Path]:
    """Files named, plus the ``*.yaml``/``*.yml`` inside named directories.

    In a directory, a file whose top level is a list is an included step file:
    it is checked through the runbooks that include it, not on its own.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*")
                            if p.suffix in (".yaml", ".yml") and not _is_step_list(p))
        else:
            files.append(path)
    return files


def _is_step_list(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    for line in head.decode("utf-8", "replace").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and stripped != "---":
            return stripped.startswith(("- ", "messages:")) or stripped == "-"
    return False


def validate_paths(paths: list[str], inventories: list[str], extra: list[str]):
    """(problems, number of files checked)."""
    problems: list[SourceError] = []
    known: set[str] = set()
    if inventories:
        from engine.source.inventory import load_inventories

        try:
            known |= set(load_inventories(inventories).vars)
        except SourceErrors as exc:
            problems += exc.errors
        except SourceError as exc:
            problems.append(exc)
    for item in extra:
        name = item.partition("=")[0]
        if name.isidentifier():
            known.add(name)
    files = runbook_files(paths)
    for path in files:
        try:
            load_runbook(path, known)
        except SourceErrors as exc:
            problems += exc.errors
        except SourceError as exc:
            problems.append(exc)
        except UsageError as exc:
            problems.append(SourceError(Pos(str(path), 1, 1), str(exc)))
    return problems, len(files)
