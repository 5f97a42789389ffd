"""A real OpenSSH server on loopback for the ssh family: the lab part ``ssh``.

``ssh_lab`` starts it once per session through ``engine.lab.ssh.up`` (the same code
as ``runbook lab up --with ssh``), with the lab's inventory written to a file:
``db_hosts`` (db1..db5) and ``lab_host``, all pointing at this one sshd, host keys
checked against the lab's known_hosts. ``service_ssh`` is what the action data
cases use. ``lab_sudo`` lets the lab user run commands through ``sudo -n`` for
``become`` tests (installs sudo when missing, removes its sudoers file after).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from services.postgres import lab_dir_for

SUDOERS = Path("/etc/sudoers.d/runbook-lab-test")


def _require_sshd() -> None:
    if os.path.exists("/usr/sbin/sshd") and shutil.which("ssh-keygen"):
        return
    # .ci/run installs it: in CI a missing server is a failure, not a skip
    message = "no OpenSSH server on this machine (apt-get install openssh-server)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def ssh_lab():
    """The sshd's state (port, user, key, known_hosts, work_dir, host key fingerprint)
    plus ``inventory``: the path of an inventory file with its targets."""
    from engine.lab import ssh as part
    from engine.lab.parts import LabContext

    _require_sshd()
    lab_dir = lab_dir_for("ssh-lab")
    shutil.rmtree(lab_dir, ignore_errors=True)
    lab_dir.mkdir(parents=True)
    lab = LabContext(lab_dir, lab_dir.with_name(lab_dir.name + "-runtime"), {}, lambda s: None)
    part.down(lab, None)  # a lab left behind by a killed session
    lab_dir.mkdir(parents=True, exist_ok=True)
    try:
        state = part.up(lab)
    except Exception as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the ssh lab did not start: {exc}")
        pytest.skip(f"the ssh lab did not start: {exc}")
    inventory = lab_dir / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(part.inventory(state), sort_keys=False))
    yield {**state, "inventory": str(inventory), "dir": str(lab_dir)}
    part.down(lab, state)
    shutil.rmtree(lab_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def service_ssh(ssh_lab) -> dict:
    """The ``service: ssh`` of action data cases: ``lab.ssh.*`` is the sshd's state."""
    return {"inventory": ssh_lab["inventory"], "vars": {"lab": {"ssh": ssh_lab}}}


def _ensure_sudo() -> None:
    if shutil.which("sudo"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "sudo"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"sudo is missing and {' '.join(argv)} failed: {done.stderr[-200:]}")


@pytest.fixture
def lab_sudo(ssh_lab):
    """Write a sudoers rule for the lab user: ``lab_sudo("ALL=(ALL) NOPASSWD: ALL")``.

    Needs root (to write /etc/sudoers.d); the file is removed after the test."""
    if os.geteuid() != 0:
        pytest.skip("configuring sudo for the lab user needs root")
    _ensure_sudo()

    def allow(*rules: str) -> None:
        text = "".join(f"{ssh_lab['user']} {rule}\n" for rule in rules)
        SUDOERS.write_text(text)
        SUDOERS.chmod(0o440)
        check = subprocess.run(["visudo", "-c", "-f", str(SUDOERS)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr

    yield allow
    SUDOERS.unlink(missing_ok=True)


def write_inventory(directory: Path, ssh_lab: dict, targets: dict, **ssh) -> Path:
    """An inventory of ``targets`` (name -> overrides of the lab's ssh settings)."""
    base = {"host": "127.0.0.1", "port": ssh_lab["port"], "user": ssh_lab["user"],
            "key": ssh_lab["key"], "known_hosts": ssh_lab["known_hosts"], "connect_timeout": 5,
            **ssh}
    inventory = {"targets": {name: {"ssh": {**base, **(extra or {})}}
                             for name, extra in targets.items()},
                 "vars": {"ssh_work_dir": ssh_lab["work_dir"]}}
    path = Path(directory) / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


def lab_processes(marker: str) -> list[str]:
    """Live processes (zombies aside) whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state != "Z":
            found.append(cmdline)
    return found
