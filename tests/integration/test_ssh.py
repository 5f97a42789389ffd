"""Remote steps over SSH against a real sshd: command, shell, file.*, wait_for, ssh.copy and
ssh.fetch on a target's host — exit codes, output, timeouts, large output, dry-runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.run import REPO, cli_env, journal_lines, run_inprocess, write_runbook
from services.ssh import lab_processes


def steps(*text: str) -> str:
    return "name: remote\nsteps:\n" + "".join(text)


def peak_memory_mb(argv: list[str], **options) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``argv`` under a small Python parent that reports the peak resident memory of
    its children: this process's own RUSAGE_CHILDREN would include every earlier test's."""
    probe = ("import resource, subprocess, sys; "
             "done = subprocess.run(sys.argv[1:]); "
             "print('peak-kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
             "sys.exit(done.returncode)")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True,
                          **options)
    kilobytes = [line.split()[1] for line in done.stderr.splitlines() if line.startswith("peak-kb ")]
    return done, int(kilobytes[-1]) / 1024 if kilobytes else float("inf")


def test_a_command_runs_on_the_host_as_the_target_user_with_its_exit_status_and_streams(ssh_lab, tmp_path):
    ran = run_inprocess(tmp_path, steps("""
  - id: who
    target: lab_host
    command: {argv: [sh, -c, "id -un; echo to-stderr >&2; exit 3"], ok_rc: [3]}
"""), inventories=[ssh_lab["inventory"]])
    assert ran.status == "completed", ran.handle.outcome.message
    value = ran.value("who")
    assert (value["rc"], value["stdout"], value["stderr"]) == (3, ssh_lab["user"], "to-stderr")
    assert value["ssh"]["host_key_checked"] is True
    assert value["ssh"]["host_key"] == ssh_lab["host_key_fingerprint"]


def test_a_failing_remote_command_fails_the_step_naming_the_host_and_its_stderr(ssh_lab, tmp_path):
    ran = run_inprocess(tmp_path, steps("""
  - id: fail
    target: lab_host
    command: [sh, -c, "echo broken replica >&2; exit 4"]
"""), inventories=[ssh_lab["inventory"]])
    assert ran.status == "failed"
    assert ran.end("fail").data["message"] == "on lab_host: exited with rc=4: broken replica"


def test_argv_reaches_the_remote_program_word_for_word_never_reparsed(ssh_lab, tmp_path):
    words = ["a b", "$HOME", "'quoted'", "; touch /tmp/runbook-ssh-injected", "*", "back\\slash", ""]
    ran = run_inprocess(tmp_path, steps(f"""
  - id: echo
    target: lab_host
    command: {json.dumps(["printf", "[%s]"] + words)}
    register: out
"""), inventories=[ssh_lab["inventory"]])
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.value("echo")["stdout"] == "".join(f"[{w}]" for w in words)
    assert not Path("/tmp/runbook-ssh-injected").exists()


def test_shell_is_explicit_and_gets_chdir_env_and_stdin(ssh_lab, tmp_path):
    ran = run_inprocess(tmp_path, steps(f"""
  - id: sh
    target: lab_host
    shell:
      cmd: 'pwd; echo "$GREETING"; tr a-z A-Z | sed s/^/in:/'
      chdir: {ssh_lab['work_dir']}
      env: {{GREETING: "hello world; $(not run)"}}
      stdin: "piped text"
"""), inventories=[ssh_lab["inventory"]])
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.value("sh")["stdout_lines"] == [ssh_lab["work_dir"], "hello world; $(not run)",
                                               "in:PIPED TEXT"]


def test_a_missing_remote_program_is_one_clear_line(ssh_lab, tmp_path):
    ran = run_inprocess(tmp_path, steps("""
  - id: missing
    target: lab_host
    command: [no-such-program-xyz, --flag]
"""), inventories=[ssh_lab["inventory"]])
    assert ran.end("missing").data["message"] == "command not found on lab_host: no-such-program-xyz"


def test_timeout_kills_the_remote_process_group(ssh_lab, tmp_path):
    marker = f"rbk-timeout-{os.getpid()}"
    start = time.monotonic()
    ran = run_inprocess(tmp_path, steps(f"""
  - id: slow
    target: lab_host
    timeout: 1
    shell: "sleep 30 & sleep 31; : {marker}"
"""), inventories=[ssh_lab["inventory"]])
    assert ran.status == "failed"
    assert "timed out on lab_host" in ran.end("slow").data["message"]
    assert time.monotonic() - start < 10
    deadline = time.monotonic() + 3
    while lab_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab_processes(marker) == []
    assert [p for p in lab_processes("sleep 3") if p.startswith("sleep 30")] == []


def test_large_remote_output_is_streamed_and_capped_with_flat_memory(ssh_lab, tmp_path):
    """200 MB printed on the host: the engine keeps head and tail, says what it dropped,
    and its peak memory stays far below the output's size."""
    runbook = write_runbook(tmp_path, steps("""
  - id: big
    target: lab_host
    mutates: false
    shell: "head -c 200000000 /dev/zero | tr '\\\\0' y; echo; echo the-end"
    register: big
  - assert:
      that:
        - big.stdout.startswith('yyyy')
        - big.stdout.endswith('the-end')
        - big.dropped_bytes.stdout > 190000000
        - big.stdout | length < 1100000
"""))
    done, peak_mb = peak_memory_mb([sys.executable, "-m", "engine", "run", str(runbook), "-i",
                           ssh_lab["inventory"], "--state-dir", str(tmp_path / "state")],
                          cwd=REPO, env=cli_env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert peak_mb < 150, f"the engine peaked at {peak_mb:.0f} MB for 200 MB of output"


def test_file_checks_look_at_the_hosts_files(ssh_lab, tmp_path):
    work = Path(ssh_lab["work_dir"])
    (work / "db.dump").write_bytes(b"PGDMP backup")
    (work / "db.dump.sha256").write_text(
        "1346b61e82dc85986b6cb755d8a47a2b08695302c58898d24abb11c21021eb90  db.dump\n")
    ran = run_inprocess(tmp_path, steps(f"""
  - id: sum
    target: lab_host
    file.checksum: {{path: {work}/db.dump, sha256_file: {work}/db.dump.sha256}}
  - id: there
    target: lab_host
    file.exists: {{path: {work}/db.dump, type: file, min_bytes: 12}}
  - id: gone
    target: lab_host
    file.exists: {{path: {work}/nothing, state: absent}}
  - id: dir
    target: lab_host
    file.exists: {{path: {work}, type: directory}}
  - id: missing
    target: lab_host
    file.checksum: {{path: {work}/nothing}}
    ignore_errors: true
"""), inventories=[ssh_lab["inventory"]])
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.value("sum")["bytes"] == 12
    assert ran.value("there")["type"] == "file" and ran.value("dir")["type"] == "directory"
    assert ran.end("missing").data["message"] == f"file not found on lab_host: {work}/nothing"


def test_wait_for_probes_paths_and_ports_from_the_host(ssh_lab, tmp_path):
    work = Path(ssh_lab["work_dir"])
    later = work / "appears-later"
    later.unlink(missing_ok=True)
    subprocess.Popen(["sh", "-c", f"sleep 0.5; touch {later}"])
    ran = run_inprocess(tmp_path, steps(f"""
  - id: path
    target: lab_host
    wait_for: {{path: {later}, timeout: 10, sleep: 0.1}}
  - id: port
    target: lab_host
    wait_for: {{port: {ssh_lab['port']}, timeout: 5}}
  - id: closed
    target: lab_host
    wait_for: {{port: 1, timeout: 0.5, sleep: 0.1}}
    ignore_errors: true
"""), inventories=[ssh_lab["inventory"]])
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.value("path")["ok"] and ran.value("port")["ok"]
    assert ran.end("closed").data["message"] == "on lab_host: 127.0.0.1:1 was not up after 0.5s"


def test_dry_run_plans_remote_changes_per_host_runs_read_only_steps_and_changes_nothing(ssh_lab, tmp_path):
    work = Path(ssh_lab["work_dir"])
    (work / "role").write_text("replica\n")
    before = {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()}
    ran = run_inprocess(tmp_path, steps(f"""
  - id: role
    target: lab_host
    command: [cat, {work}/role]
    mutates: false
    register: role
  - id: promote
    target: db_hosts
    command: [sh, -c, "echo primary > {work}/role"]
  - id: upload
    target: lab_host
    ssh.copy: {{content: "new\\n", dest: {work}/role}}
"""), inventories=[ssh_lab["inventory"]], dry_run=True)
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.value("role")["stdout"] == "replica"  # read-only: ran for real
    plans = {e.step["target"]: e.data["plan"] for e in ran.of("promote", "step.planned")}
    assert plans == {f"db{n}": f"on db{n}: run sh -c 'echo primary > {work}/role'" for n in range(1, 6)}
    assert ran.end("upload").data["plan"].startswith(f"on lab_host: upload content → {work}/role")
    assert {p.name: p.read_bytes() for p in work.iterdir() if p.is_file()} == before
    assert ran.handle.outcome.findings == []


def test_copy_uploads_only_when_the_content_differs_and_fetch_downloads_it_back(ssh_lab, tmp_path):
    work = Path(ssh_lab["work_dir"])
    source = tmp_path / "app.conf"
    source.write_bytes(os.urandom(300_000))
    runbook = steps(f"""
  - id: up
    target: lab_host
    ssh.copy: {{src: {source}, dest: {work}/, mode: "0640"}}
    register: up
  - id: down
    target: lab_host
    ssh.fetch: {{src: {work}/app.conf, dest: {tmp_path}/fetched/}}
    register: down
""")
    first = run_inprocess(tmp_path, runbook, inventories=[ssh_lab["inventory"]])
    assert first.status == "completed", first.handle.outcome.message
    assert (work / "app.conf").read_bytes() == source.read_bytes()
    assert oct((work / "app.conf").stat().st_mode & 0o777) == "0o640"
    assert (tmp_path / "fetched" / "app.conf").read_bytes() == source.read_bytes()
    assert first.value("up")["changed"] and first.value("down")["changed"]
    assert first.value("up")["previous_sha256"] is None

    again = run_inprocess(tmp_path, runbook, inventories=[ssh_lab["inventory"]])
    assert again.value("up")["changed"] is False and again.value("down")["changed"] is False
    assert again.end("up").data["message"] == "no change: already there"


def test_copy_of_unchanged_content_with_another_mode_only_changes_the_mode(ssh_lab, tmp_path):
    work = Path(ssh_lab["work_dir"])
    target = work / "mode.conf"
    target.write_text("same\n")
    os.chown(target, *_lab_ids(ssh_lab))
    target.chmod(0o644)
    ran = run_inprocess(tmp_path, steps(f"""
  - id: chmod
    target: lab_host
    ssh.copy: {{content: "same\\n", dest: {target}, mode: "0600"}}
"""), inventories=[ssh_lab["inventory"]])
    assert ran.status == "completed", ran.handle.outcome.message
    assert ran.end("chmod").data["message"] == f"set mode 0644 → 0600 of {target}"
    assert target.stat().st_mode & 0o777 == 0o600


def test_copy_and_fetch_need_a_target_with_an_ssh_block(tmp_path):
    ran = run_inprocess(tmp_path, steps("""
  - id: up
    ssh.copy: {content: x, dest: /tmp/x}
"""))
    assert ran.end("up").data["message"] == "ssh.copy runs on a host: the step has no target: needs no ssh: block"


def test_secret_settings_never_reach_the_journal(ssh_lab, tmp_path):
    """A passphrase-protected key whose passphrase comes from secrets: it logs in, and
    the passphrase is nowhere in the journal."""
    passphrase = "pass-phrase-7f3c9a"
    key = tmp_path / "id_secret"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(key)], check=True)
    authorized = Path(ssh_lab["runtime"]) / "authorized_keys"
    original = authorized.read_text()
    authorized.write_text(original + Path(f"{key}.pub").read_text())
    try:
        inventory = tmp_path / "inv.yaml"
        inventory.write_text(json.dumps({
            "secrets": {"phrase": {"env": "RBK_TEST_PHRASE"}},
            "targets": {"vault": {"ssh": {
                "host": "127.0.0.1", "port": ssh_lab["port"], "user": ssh_lab["user"],
                "key": str(key), "key_passphrase": "{{ secrets.phrase }}",
                "known_hosts": ssh_lab["known_hosts"]}}}}))
        os.environ["RBK_TEST_PHRASE"] = passphrase
        ran = run_inprocess(tmp_path, steps("""
  - id: who
    target: vault
    command: [id, -un]
"""), inventories=[inventory])
    finally:
        os.environ.pop("RBK_TEST_PHRASE", None)
        authorized.write_text(original)
    assert ran.status == "completed", ran.handle.outcome.message
    assert passphrase not in json.dumps(journal_lines(tmp_path / "state"))


def _lab_ids(ssh_lab) -> tuple[int, int]:
    import pwd

    account = pwd.getpwnam(ssh_lab["user"])
    return account.pw_uid, account.pw_gid


@pytest.fixture(autouse=True)
def _clean_work_dir(ssh_lab):
    yield
    for path in Path(ssh_lab["work_dir"]).iterdir():
        if path.is_file():
            path.unlink()


def test_ctrl_c_stops_the_remote_command_and_the_run_is_resumable(ssh_lab, tmp_path):
    import signal

    from helpers.run import start_cli

    marker = f"rbk-sigint-{os.getpid()}"
    write_runbook(tmp_path, steps(f"""
  - id: slow
    target: lab_host
    shell: "sleep 60; : {marker}"
"""))
    engine = start_cli("run", "runbook.yaml", "-i", ssh_lab["inventory"], "--state-dir", "state",
                       "--run-id", "int", cwd=tmp_path)
    deadline = time.monotonic() + 30
    while not lab_processes(marker) and time.monotonic() < deadline:
        assert engine.poll() is None, engine.communicate()
        time.sleep(0.05)
    assert lab_processes(marker), "the remote command never started"
    engine.send_signal(signal.SIGINT)
    out, err = engine.communicate(timeout=30)
    assert engine.returncode == 130, out + err
    deadline = time.monotonic() + 5
    while lab_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lab_processes(marker) == []
    assert journal_lines(tmp_path / "state")[-1]["type"] == "run.interrupted"


def test_a_script_whose_inner_command_is_missing_reports_the_scripts_own_rc(ssh_lab, tmp_path):
    ran = run_inprocess(tmp_path, steps("""
  - id: script
    target: lab_host
    shell: "no-such-tool-abc --version"
"""), inventories=[ssh_lab["inventory"]])
    message = ran.end("script").data["message"]
    assert message.startswith("on lab_host: exited with rc=127: ") and "no-such-tool-abc" in message


def test_port_probes_fall_back_to_bash_on_the_host_where_forwarding_is_refused(ssh_lab):
    """The lab's sshd allows local forwarding (direct-tcpip, the usual path); a server that
    refuses it gets the same answers from bash's /dev/tcp on the host."""
    import yaml

    from engine.actions.base import Context
    from engine.connections.ssh import remote

    target = {"name": "lab_host", **yaml.safe_load(Path(ssh_lab["inventory"]).read_text())["targets"]["lab_host"]}
    ctx = Context()
    ctx.bind_step(None, None, target=target)
    try:
        session = remote(ctx)
        answers = [session.port_open("127.0.0.1", port, ctx) for port in (ssh_lab["port"], 1)]
        session.no_forwarding = True
        fallback = [session.port_open("127.0.0.1", port, ctx) for port in (ssh_lab["port"], 1)]
    finally:
        ctx.close()
    assert answers == fallback == [True, False]
