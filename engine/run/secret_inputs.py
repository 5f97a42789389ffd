"""Secret inputs across a resume: never written in clear, asked for again.

A ``secret: true`` input given with ``-e`` is recorded in ``run.started`` as
``NAME=***`` (whatever its length: a short secret is not masked as a substring
by the redactor, so it is masked here by name). ``runbook resume`` rebuilds the
run from the journal, so such an input must be given again: from the
environment as ``RUNBOOK_SECRET_<NAME>`` (upper case) or with ``-e NAME=VALUE``
on ``runbook resume``. A resume without one is refused (exit 2) naming them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Mapping

from engine.errors import UsageError
from engine.secrets import MASK
from engine.source.model import Runbook

ENV_PREFIX = "RUNBOOK_SECRET_"


def secret_names(runbook: Runbook) -> set[str]:
    return {name for name, spec in runbook.inputs.items() if spec.secret}


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def recorded_extra_args(runbook: Runbook, items: list[str]) -> list[str]:
    """The ``-e`` arguments as the journal keeps them: each secret input's value is ``***``."""
    secret = secret_names(runbook)
    return [_masked_item(item, secret) for item in items] if secret else list(items)


def _masked_item(item: str, secret: set[str]) -> str:
    if item.startswith("@"):
        return item  # a file: re-read on resume, its content never journaled
    if item.lstrip().startswith("{"):
        try:
            loaded = json.loads(item)
        except ValueError:
            return MASK
        if isinstance(loaded, dict):
            return json.dumps({k: MASK if k in secret else v for k, v in loaded.items()})
        return MASK
    key, sep, _ = item.partition("=")
    return f"{key}={MASK}" if sep and key in secret else item


@dataclass(frozen=True)
class Resupplied:
    """Secret inputs given again to ``runbook resume``: ``-e`` values and the environment."""

    given: dict = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))


def apply_resupplied(runbook: Runbook, extra: dict, again: Resupplied, run_id: str) -> dict:
    """``extra`` (from the journal) with each masked secret input replaced by its new value."""
    secret = secret_names(runbook)
    others = sorted(set(again.given) - secret)
    if others:
        raise UsageError(f"runbook resume -e takes only the run's secret inputs "
                         f"({', '.join(sorted(secret)) or 'it has none'}); "
                         f"{', '.join(others)}: a resumed run keeps the values it started with")
    extra = dict(extra)
    missing = []
    for name in sorted(secret):
        value = again.given.get(name, again.environ.get(env_name(name)))
        if value is not None and (name in again.given or extra.get(name) == MASK):
            extra[name] = value
        elif extra.get(name) == MASK:
            missing.append(name)
    if missing:
        raise UsageError(_missing_message(run_id, missing))
    return extra


def _missing_message(run_id: str, missing: list[str]) -> str:
    envs = " ".join(f"{env_name(n)}=..." for n in missing)
    opts = " ".join(f"-e {n}=..." for n in missing)
    return (f"run {run_id}: secret input(s) {', '.join(missing)} were given with -e at the start "
            f"and are never written to the journal: give them again in the environment "
            f"({envs}) or on the command line (runbook resume {run_id} {opts})")
