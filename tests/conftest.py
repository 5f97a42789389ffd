"""Fixtures for every test: a run context, and the real services of ``tests/services``.

Each module in ``tests/services/`` starts one kind of real service once per session
(PostgreSQL, Kubernetes, moto, an inbox, sshd) and is loaded here as a plugin, so
a family adds its service by adding a module there and touches nothing else.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.actions.base import Context

pytest_plugins = sorted(f"services.{path.stem}"
                        for path in (Path(__file__).parent / "services").glob("*.py")
                        if path.stem != "__init__")


@pytest.fixture
def ctx():
    """A fresh run context; its cached connections are closed after the test."""
    context = Context(dry_run=False)
    yield context
    context.close()
