"""Logging in over SSH: host keys checked against known_hosts, authentication, and one
clear refusal per way it fails (unknown or changed host key with its fingerprint,
bad key, wrong credentials, unreachable host). Used by ``engine.connections.ssh``."""
from __future__ import annotations

import asyncio

from engine.errors import ActionError


class PreflightFailed(ActionError):
    """The host cannot be used (bad settings, unreachable, host key, login, become).

    Raised from a dry-run's ``plan()`` too: the executor counts it as a finding."""

    finding = True


async def connect(settings):
    """Connect and authenticate; every way this fails is one ActionError naming the host."""
    import asyncssh

    seen: dict = {}
    trusted = _known_hosts(settings)
    options = dict(port=settings.port, username=settings.user, known_hosts=trusted,
                   connect_timeout=settings.connect_timeout, login_timeout=settings.connect_timeout,
                   keepalive_interval=30, client_factory=_witness(seen))
    if settings.key:
        options.update(client_keys=[_client_key(settings)])
    if settings.password is not None:
        options.update(password=settings.password)
    try:
        connection = await asyncssh.connect(settings.host, **options)
    except asyncssh.HostKeyNotVerifiable:
        raise PreflightFailed(_host_key_refusal(settings, trusted, seen)) from None
    except asyncssh.PermissionDenied:
        how = f"key {settings.key}" if settings.key else "the default keys and agent"
        how += " and a password" if settings.password is not None else ""
        raise PreflightFailed(f"{settings.target}: authentication failed for "
                          f"{settings.address} (tried {how})") from None
    except (asyncio.TimeoutError, TimeoutError):
        raise PreflightFailed(f"{settings.target}: unreachable: no SSH answer from "
                          f"{settings.address} within {settings.connect_timeout:g}s") from None
    except OSError as exc:
        raise PreflightFailed(f"{settings.target}: unreachable: cannot connect to "
                          f"{settings.address}: {exc.strerror or exc}") from None
    except asyncssh.Error as exc:
        raise PreflightFailed(f"{settings.target}: SSH to {settings.address} failed: "
                          f"{exc.reason}") from None
    key = connection.get_server_host_key()
    return connection, key.get_fingerprint("sha256") if key else ""


def _known_hosts(settings):
    """The trusted host keys (None: not checked, by the target's explicit choice).

    A missing file trusts nobody: asyncssh would otherwise skip the check entirely."""
    import asyncssh

    if not settings.host_key_checking:
        return None
    try:
        with open(settings.known_hosts_path, encoding="utf-8") as handle:
            return asyncssh.import_known_hosts(handle.read())
    except FileNotFoundError:
        return asyncssh.import_known_hosts("")
    except (OSError, ValueError) as exc:
        raise PreflightFailed(f"{settings.target}: cannot read known_hosts "
                          f"{settings.known_hosts_path}: {exc}") from None


def _client_key(settings):
    import asyncssh

    try:
        return asyncssh.read_private_key(settings.key, settings.key_passphrase)
    except FileNotFoundError:
        raise PreflightFailed(f"{settings.target}: ssh key file not found: {settings.key}") from None
    except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        raise PreflightFailed(f"{settings.target}: cannot load ssh key {settings.key}: "
                          f"{exc}") from None


def _witness(seen: dict):
    """asyncssh client callbacks that remember the key a host presented (to name it)."""
    import asyncssh

    class Witness(asyncssh.SSHClient):
        def validate_host_public_key(self, host, addr, port, key) -> bool:
            seen.update(key=key, addr=addr)
            return False  # not in known_hosts: refused (asyncssh raises HostKeyNotVerifiable)

    return Witness


def _host_key_refusal(settings, trusted, seen: dict) -> str:
    key = seen.get("key")
    fingerprint = key.get_fingerprint("sha256") if key is not None else "(not received)"
    kind = key.get_algorithm() if key is not None else "host"
    known = trusted.match(settings.host, seen.get("addr", ""), settings.port)[0] if trusted else []
    where = f"{settings.host}:{settings.port}" if settings.port != 22 else settings.host
    if known:
        return (f"{settings.target}: host key for {where} has CHANGED: it presented {kind} "
                f"{fingerprint}, which is not the key in {settings.known_hosts_path} — refusing "
                f"to connect (a new server, or someone in the middle); check it, then update "
                f"known_hosts")
    return (f"{settings.target}: host key for {where} is unknown: it presented {kind} "
            f"{fingerprint}, not in {settings.known_hosts_path} — refusing to connect; verify "
            f"the fingerprint and add the key (ssh-keyscan -p {settings.port} {settings.host}), "
            f"or set the target's known_hosts")
