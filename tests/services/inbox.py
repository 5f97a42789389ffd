"""The lab's inbox as test fixtures: the real receiver (HTTP + SMTP servers), in-process.

Loaded for every test as a pytest plugin (``tests/conftest.py``). ``inbox_server``
starts the same servers ``runbook lab up --with inbox`` runs in its background
process (``engine.lab.inbox_servers.Inbox``), once per session, with the lab's
inventory (targets ``incidents``, ``oncall``, ``incident_team_mail`` ...) written
next to it. ``service_inbox`` is the ``service: inbox`` of action data cases;
``inbox`` gives a test the records received since it started.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml


class InboxFixture:
    """The running inbox: its config, inventory file and what it received."""

    def __init__(self, config: dict, inventory: Path, server) -> None:
        self.config = config
        self.inventory = inventory
        self.server = server
        self._mark = 0

    @property
    def url(self) -> str:
        return self.config["url"]

    def mark(self) -> None:
        """From now on, ``received()`` shows only newer records."""
        self._mark = len(self._all())

    def received(self, channel: str | None = None, lookups: bool = False) -> list[dict]:
        entries = self._all()[self._mark:]
        return [e for e in entries if (channel is None or e.get("channel") == channel)
                and (lookups or not e.get("lookup"))]

    def _all(self) -> list[dict]:
        from engine.lab.inbox import received

        return received(self.config["records"], include_lookups=True)

    def component(self, name: str) -> str:
        """A Statuspage component's current status on the emulated page."""
        found = [c for c in self.server.services.components.values() if c["name"] == name]
        return found[0]["status"]


@pytest.fixture(scope="session")
def inbox_server(tmp_path_factory):
    try:
        from engine.lab.inbox import inventory_for, make_config, write_secrets
        from engine.lab.inbox_servers import Inbox
        directory = tmp_path_factory.mktemp("inbox")
        config = make_config(directory)
        server = Inbox(config).start()
    except Exception as exc:  # no aiosmtpd, no openssl: in CI that is a failure
        if os.environ.get("CI"):
            pytest.fail(f"the inbox cannot start: {exc}")
        pytest.skip(f"the inbox cannot start: {exc}")
    inventory = directory / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(inventory_for(config, write_secrets(config)),
                                        sort_keys=False))
    yield InboxFixture(config, inventory, server)
    server.stop()


@pytest.fixture(scope="session")
def service_inbox(inbox_server) -> dict:
    """The ``service: inbox`` of action data cases: the inventory and ``{{ inbox.… }}``."""
    config = inbox_server.config
    return {"inventory": str(inbox_server.inventory),
            "vars": {"inbox": {"url": config["url"], "page_id": config["statuspage"]["page_id"],
                               "cert": config["cert"]}}}


@pytest.fixture
def inbox(inbox_server) -> InboxFixture:
    """The session's inbox, showing only what this test makes it receive."""
    inbox_server.mark()
    return inbox_server
