"""The PostgreSQL lab as test fixtures: a primary + replica and an HTTP app.

Loaded for every test as a pytest plugin (``tests/conftest.py``).

``pg_lab`` starts one lab per test session (about 1.5 s) and stops it at the
end. Its dir is stable per checkout, so a lab left behind by a killed run is
cleaned up by the next session's ``lab_up``. Tests that change the seed data
ask for ``seeded_lab`` (seed rows put back before the test); tests that
change the topology (promotion, stopping servers) start their own lab with
``spare_lab``.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest

from engine.lab.sandbox import LabError, lab_down, lab_reset, lab_up, server_bin_dir

_CHECKOUT = hashlib.sha256(str(Path(__file__).resolve().parents[2]).encode()).hexdigest()[:8]


def lab_dir_for(name: str) -> Path:
    """A lab dir that is the same for every run of this checkout (stale labs get reused dirs)."""
    return Path(tempfile.gettempdir()) / f"runbook-test-{name}-{_CHECKOUT}"


def _require_postgres() -> None:
    try:
        server_bin_dir()
    except LabError as exc:
        # .ci/run installs the server: in CI a missing server is a failure, not a skip
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL server programs on this machine: {exc}")
        pytest.skip(f"no PostgreSQL server programs on this machine (apt-get install postgresql): {exc}")


@pytest.fixture(scope="session")
def pg_lab():
    """The session's lab: its description from ``lab_up`` (dsns, admin_dsns, app urls ...)."""
    _require_postgres()
    lab_dir = lab_dir_for("session-lab")
    description = lab_up(lab_dir)
    yield description
    lab_down(lab_dir)


@pytest.fixture(scope="session")
def service_postgres(pg_lab) -> dict:
    """The ``service: postgres`` of action data cases: the lab's inventory and its vars."""
    return {"inventory": pg_lab["inventory"], "vars": {"lab": pg_lab}}


@pytest.fixture
def seeded_lab(pg_lab):
    """The session's lab with its seed data (users, orders) put back before the test."""
    lab_reset(pg_lab["dir"])
    return pg_lab


@pytest.fixture
def spare_lab():
    """Start a lab of the test's own (for topology changes); stopped after the test.

    Call it with a short name: ``spare_lab("promote")`` returns the description.
    """
    _require_postgres()
    started: list[Path] = []

    def start(name: str) -> dict:
        lab_dir = lab_dir_for(name)
        started.append(lab_dir)
        return lab_up(lab_dir)

    yield start
    for lab_dir in started:
        lab_down(lab_dir)


class Superuser:
    """Runs SQL as the lab's superuser over the unix socket: test set-up, not under test."""

    def execute(self, server: dict, sql: str, dbname: str = "erp") -> None:
        with self._connect(server, dbname) as conn:
            conn.execute(sql)

    def value(self, server: dict, sql: str, dbname: str = "erp"):
        """The first column of the first row of ``sql``."""
        with self._connect(server, dbname) as conn:
            return conn.execute(sql).fetchone()[0]

    @staticmethod
    def _connect(server: dict, dbname: str):
        import psycopg

        dsn = server["admin_dsn"].replace("dbname=postgres", f"dbname={dbname}")
        return psycopg.connect(dsn, autocommit=True)


@pytest.fixture
def superuser() -> Superuser:
    """SQL as the superuser, for arranging a test: ``superuser.execute(pg_lab["primary"], sql)``."""
    return Superuser()
