"""Manifests for ``kubernetes.apply``: given inline (a mapping or a list) or read from a
YAML/JSON file or a directory of them (multi-document, ``kind: List`` expanded)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.actions.base import ActionError
from engine.actions.kubernetes.refs import ObjectRef

__all__ = ["manifests_of", "ref_of_manifest"]

_SUFFIXES = (".yaml", ".yml", ".json")


def manifests_of(args: dict) -> list[dict]:
    """Every object the step applies, checked for apiVersion, kind and metadata.name."""
    if args.get("manifest") is not None:
        raw = args["manifest"] if isinstance(args["manifest"], list) else [args["manifest"]]
        where = "manifest"
    else:
        raw, where = _read(Path(str(args["path"])).expanduser()), str(args["path"])
    found = [doc for item in raw for doc in _expanded(item)]
    if not found:
        raise ActionError(f"{where}: no objects to apply")
    for index, doc in enumerate(found, 1):
        _check(doc, f"{where} object {index}")
    return found


def _read(path: Path) -> list:
    import yaml

    files = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES) if path.is_dir() else [path]
    docs: list = []
    for file in files:
        try:
            docs += [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
        except OSError as exc:
            raise ActionError(f"cannot read {file}: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ActionError(f"{file}: not valid YAML: {' '.join(str(exc).split())}") from None
    return docs


def _expanded(item: Any) -> list:
    if isinstance(item, dict) and item.get("kind") == "List" and isinstance(item.get("items"), list):
        return list(item["items"])
    return [item]


def _check(doc: Any, where: str) -> None:
    if not isinstance(doc, dict):
        raise ActionError(f"{where}: not a mapping")
    missing = [key for key in ("apiVersion", "kind") if not doc.get(key)]
    if not isinstance(doc.get("metadata"), dict) or not doc["metadata"].get("name"):
        missing.append("metadata.name")
    if missing:
        raise ActionError(f"{where}: missing {', '.join(missing)}")


def ref_of_manifest(doc: dict, namespace: str | None) -> ObjectRef:
    """The object a manifest names; ``namespace`` fills in where the manifest has none."""
    metadata = doc["metadata"]
    return ObjectRef(kind=doc["kind"], name=metadata["name"], api_version=doc["apiVersion"],
                     namespace=metadata.get("namespace") or namespace)
