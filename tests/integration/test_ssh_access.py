"""Getting onto a host: host keys (unknown, changed, checking off), authentication,
unreachable hosts, become through sudo -n — each a clear line naming the host, in a
real run and as a dry-run finding."""
from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path


from engine.run.values import restored_value
from helpers.run import run_inprocess
from services.ssh import lab_processes, write_inventory

WHO = "name: access\nsteps:\n  - id: who\n    target: {target}\n    command: [id, -un]\n    register: who\n"


def run_who(tmp_path: Path, inventory: Path, target: str = "host", **options):
    return run_inprocess(tmp_path, WHO.format(target=target), inventories=[inventory], **options)


def other_host_key(tmp_path: Path) -> str:
    key = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def test_an_unknown_host_key_is_refused_naming_the_host_and_its_fingerprint(ssh_lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    ran = run_who(tmp_path, write_inventory(tmp_path, ssh_lab, {"host": {"known_hosts": str(empty)}}))
    assert ran.status == "failed"
    message = ran.end("who").data["message"]
    assert message.startswith(f"host: host key for 127.0.0.1:{ssh_lab['port']} is unknown")
    assert ssh_lab["host_key_fingerprint"] in message and str(empty) in message


def test_a_changed_host_key_is_refused_as_changed(ssh_lab, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{ssh_lab['port']} {other_host_key(tmp_path)}\n")
    ran = run_who(tmp_path, write_inventory(tmp_path, ssh_lab, {"host": {"known_hosts": str(known)}}))
    message = ran.end("who").data["message"]
    assert f"host key for 127.0.0.1:{ssh_lab['port']} has CHANGED" in message
    assert ssh_lab["host_key_fingerprint"] in message


def test_the_users_known_hosts_is_the_default(ssh_lab, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(Path(ssh_lab["known_hosts"]).read_text())
    monkeypatch.setenv("HOME", str(home))
    ran = run_who(tmp_path, write_inventory(tmp_path, ssh_lab, {"host": {"known_hosts": None}}))
    assert ran.status == "completed", ran.handle.outcome.message
    (home / ".ssh" / "known_hosts").write_text("")
    again = run_who(tmp_path, write_inventory(tmp_path, ssh_lab, {"host": {"known_hosts": None}}))
    assert f"not in {home}/.ssh/known_hosts" in again.end("who").data["message"]


def test_turning_host_key_checking_off_is_explicit_and_shown_in_plan_and_journal(ssh_lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inventory = write_inventory(tmp_path, ssh_lab, {"host": {"known_hosts": str(empty),
                                                             "host_key_checking": False}})
    ran = run_who(tmp_path, inventory)
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.value("who")["ssh"]["host_key_checked"] is False
    assert "host key NOT checked on host" in ran.end("who").data["message"]
    rehearsal = run_who(tmp_path, inventory, dry_run=True)
    assert rehearsal.end("who").data["plan"] == (
        "on host: run id -un [host key NOT checked on host: host_key_checking: false]")


def test_a_wrong_key_is_an_authentication_failure_for_that_host(ssh_lab, tmp_path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    ran = run_who(tmp_path, write_inventory(tmp_path, ssh_lab, {"host": {"key": str(stranger)}}))
    assert ran.end("who").data["message"] == (
        f"host: authentication failed for {ssh_lab['user']}@127.0.0.1:{ssh_lab['port']} "
        f"(tried key {stranger})")


def test_a_missing_key_file_is_named(ssh_lab, tmp_path):
    ran = run_who(tmp_path, write_inventory(tmp_path, ssh_lab, {"host": {"key": "/nonexistent/id"}}))
    assert ran.end("who").data["message"] == "host: ssh key file not found: /nonexistent/id"


def test_a_closed_port_is_unreachable(ssh_lab, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ran = run_who(tmp_path, write_inventory(tmp_path, ssh_lab, {"host": {"port": port}}))
    message = ran.end("who").data["message"]
    assert message.startswith(f"host: unreachable: cannot connect to {ssh_lab['user']}@127.0.0.1:{port}")


def test_a_server_that_never_answers_times_out_after_connect_timeout(ssh_lab, tmp_path):
    silent = socket.socket()  # accepts the connection, never says a word of SSH
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    port = silent.getsockname()[1]
    accepted = []  # kept open (and silent) until the test ends
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    try:
        ran = run_who(tmp_path, write_inventory(tmp_path, ssh_lab, {"host": {
            "port": port, "connect_timeout": "1s"}}))
    finally:
        silent.close()
        for connection, _ in accepted:
            connection.close()
    assert ran.end("who").data["message"] == (
        f"host: unreachable: no SSH answer from {ssh_lab['user']}@127.0.0.1:{port} within 1s")


def test_bad_ssh_settings_are_one_line(ssh_lab, tmp_path):
    ran = run_who(tmp_path, write_inventory(tmp_path, ssh_lab, {"host": {"hots": "x"}}))
    assert ran.end("who").data["message"].startswith("target host: unknown ssh setting(s) hots")


def test_an_unreachable_host_is_a_finding_of_the_dry_run_not_its_end(ssh_lab, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inventory = write_inventory(tmp_path, ssh_lab, {"good": {}, "bad": {"port": port}})
    ran = run_inprocess(tmp_path, "name: rehearse\nsteps:\n  - id: promote\n    target: [good, bad]\n"
                                  "    command: [pg_ctl, promote]\n", inventories=[inventory],
                        dry_run=True)
    assert ran.status == "completed"
    plans = {e.step["target"]: e.data for e in ran.of("promote", "step.planned")}
    assert plans["good"]["plan"] == "on good: run pg_ctl promote" and "finding" not in plans["good"]
    assert "bad: unreachable" in plans["bad"]["finding"]
    [finding] = ran.handle.outcome.findings
    assert finding["name"] == "promote on bad" and "unreachable" in finding["message"]


# --- become ---

def test_become_runs_the_command_as_another_user_through_sudo(ssh_lab, lab_sudo, tmp_path):
    lab_sudo("ALL=(ALL) NOPASSWD: ALL")
    inventory = write_inventory(tmp_path, ssh_lab, {"root": {"become": True},
                                                    "nobody": {"become": True, "become_user": "nobody"}})
    ran = run_inprocess(tmp_path, """
name: become
steps:
  - id: who
    target: [root, nobody]
    command: {argv: [sh, -c, 'id -un; echo "$X"'], env: {X: "a b"}, chdir: /}
    register: who
""", inventories=[inventory])
    assert ran.status == "completed", ran.handle.outcome.message
    results = {e.step["target"]: restored_value(e.data) for e in ran.of("who", "step.succeeded")}
    assert results["root"]["stdout_lines"] == ["root", "a b"]
    assert results["nobody"]["stdout_lines"] == ["nobody", "a b"]
    assert results["nobody"]["ssh"]["become"] == "nobody"


def test_become_that_needs_a_password_fails_clearly_instead_of_hanging(ssh_lab, lab_sudo, tmp_path):
    lab_sudo("ALL=(nobody) NOPASSWD: ALL", "ALL=(root) ALL")
    inventory = write_inventory(tmp_path, ssh_lab, {"host": {"become": True}})
    ran = run_who(tmp_path, inventory)
    message = ran.end("who").data["message"]
    assert message.startswith(f"host: become root failed: sudo -n on {ssh_lab['user']}@127.0.0.1")
    assert "password" in message
    rehearsal = run_inprocess(tmp_path, "name: r\nsteps:\n  - id: promote\n    target: host\n"
                                        "    command: [pg_ctl, promote]\n", inventories=[inventory],
                              dry_run=True)
    assert "become root failed" in rehearsal.end("promote").data["finding"]


def test_become_kills_the_remote_command_on_timeout(ssh_lab, lab_sudo, tmp_path):
    lab_sudo("ALL=(ALL) NOPASSWD: ALL")
    marker = "rbk-become-timeout"
    ran = run_inprocess(tmp_path, f"""
name: become-timeout
steps:
  - id: slow
    target: host
    timeout: 1
    shell: "sleep 40; : {marker}"
""", inventories=[write_inventory(tmp_path, ssh_lab, {"host": {"become": True}})])
    assert "timed out on host" in ran.end("slow").data["message"]
    deadline = time.monotonic() + 3
    while lab_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab_processes(marker) == []


def test_a_groups_shared_ssh_block_takes_each_targets_own_host(ssh_lab, tmp_path):
    inventory = tmp_path / "shared.yaml"
    shared = {"port": ssh_lab["port"], "user": ssh_lab["user"], "key": ssh_lab["key"],
              "known_hosts": ssh_lab["known_hosts"]}
    inventory.write_text(json.dumps({"groups": {"dbs": {"vars": {"ssh": shared}, "targets": {
        "a": {"host": "127.0.0.1"}, "c": {}}}}}))
    ran = run_inprocess(tmp_path, WHO.format(target="dbs").replace("register: who\n",
                                                                   "register: who\n    ignore_errors: true\n"),
                        inventories=[inventory])
    ends = {e.step["target"]: e for e in ran.events if e.type in ("step.succeeded", "step.failed")
            and e.step and e.step.get("id") == "who"}
    assert ends["a"].type == "step.succeeded"
    assert restored_value(ends["a"].data)["ssh"]["host"] == "127.0.0.1"
    assert ends["c"].data["message"] == "target c: ssh.host (or the target's host) is required"


def test_a_no_log_steps_probe_still_counts_but_says_nothing(ssh_lab, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inventory = write_inventory(tmp_path, ssh_lab, {"bad": {"port": port}})
    ran = run_inprocess(tmp_path, "name: quiet\nsteps:\n  - id: secret\n    target: bad\n"
                                  "    no_log: true\n    command: [rotate-key, s3cr3t]\n",
                        inventories=[inventory], dry_run=True)
    planned = ran.end("secret").data
    assert planned["plan"] == "command <hidden: no_log>"
    assert planned["finding"] == "pre-flight probe failed, details <hidden: no_log>"
    assert "s3cr3t" not in json.dumps([e.data for e in ran.of("secret")])
