"""Resource keys: the names under which a rehearsal remembers what a planned step would
change, so that a later read-only step on the same thing is planned, not run against the
old state. Two steps touch the same thing when they share a key."""
from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit

PATH_KEYS = ("path", "dest", "src", "sha256_file", "chdir")
URL_KEYS = ("url", "health_url")


def default_resources(args: Any, target: dict | None) -> set[str]:
    """Keys from the step's target, the usual argument names, and every file path written
    in the arguments (an argv element, an environment value, a path inside a script)."""
    keys: set[str] = set()
    if target and target.get("name"):
        keys.add(f"target:{target['name']}")
    if isinstance(args, dict):
        if isinstance(args.get("dsn"), str):
            keys.add(postgres_key(args["dsn"]))
        for name in PATH_KEYS:
            if isinstance(args.get(name), str) and args[name]:
                keys.add(file_key(args[name]))
        for name in URL_KEYS:
            if isinstance(args.get(name), str) and args[name]:
                keys.add(http_key(args[name]))
    named = {k: v for k, v in args.items() if k != "dsn"} if isinstance(args, dict) else args
    keys |= {file_key(path) for path in paths_in(named)}
    return keys


_URL = re.compile(r"\S+://\S*")  # a URL's path is not a file here
_ABSOLUTE = re.compile(r"(?<![\w:/.~$-])(/[\w.@+-]+(?:/[\w.@+-]+)+)")


def paths_in(value: Any) -> set[str]:
    """File paths named in a value: whole strings that look like a path (``a/b``,
    ``/x/y``) and absolute paths inside longer text (a shell script)."""
    found: set[str] = set()
    if isinstance(value, str):
        if "/" in value and "://" not in value and not any(c.isspace() for c in value) \
                and "{" not in value and len(value) < 4096:
            found.add(value)
        found.update(_ABSOLUTE.findall(_URL.sub(" ", value)))
    elif isinstance(value, dict):
        for item in value.values():
            found |= paths_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found |= paths_in(item)
    return found


def postgres_key(dsn: str) -> str:
    """``postgres:host:port/db`` of a URL or key=value DSN (never its password)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        return f"postgres:{host}:{parts.port or 5432}/{parts.path.lstrip('/')}"
    fields = dict(item.split("=", 1) for item in dsn.split() if "=" in item)
    return (f"postgres:{fields.get('host', 'localhost')}:{fields.get('port', '5432')}/"
            f"{fields.get('dbname', '')}")


def file_key(path: str) -> str:
    return f"file:{os.path.abspath(os.path.expanduser(path))}"


def http_key(url: str) -> str:
    parts = urlsplit(url)
    return f"http:{parts.scheme}://{parts.netloc}"


def overlaps(a: str, b: str) -> bool:
    """Whether two keys name the same thing (a file and its sidecar ``.sha256`` too). A key
    ending in ``/*`` names everything under its prefix (``k8s:prod/production/Pod/*``: the
    pods a label selector picks)."""
    if a == b:
        return True
    if a.startswith("file:") and b.startswith("file:"):
        return _within(a, b) or _within(b, a)
    return _under_wildcard(a, b) or _under_wildcard(b, a)


def _under_wildcard(key: str, wildcard: str) -> bool:
    return wildcard.endswith("/*") and key.startswith(wildcard[:-1])


def _within(path: str, other: str) -> bool:
    """``path`` is inside the directory ``other``, or is ``other``'s sidecar (``x.sha256``)."""
    return path.startswith(other + "/") or path.startswith(other + ".")
