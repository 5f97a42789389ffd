"""``runbook lab up --with ssh``: the sshd part of the lab, and asyncssh loaded only when a
step runs on a host."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from engine.lab.sandbox import lab_down, lab_status, lab_up
from helpers.run import cli_env, runbook_cli, write_runbook
from services.postgres import _require_postgres, lab_dir_for
from services.ssh import _require_sshd


def test_lab_up_with_ssh_adds_a_fleet_that_runbooks_reach_and_lab_down_removes_it(tmp_path):
    _require_postgres()
    _require_sshd()
    lab_dir = lab_dir_for("ssh-part")
    state = lab_up(lab_dir, ["ssh"])
    try:
        part = state["parts"]["ssh"]
        inventory = yaml.safe_load(Path(state["inventory"]).read_text())
        assert inventory["groups"]["db_hosts"]["targets"] == {f"db{n}": {} for n in range(1, 6)}
        assert inventory["groups"]["db_hosts"]["vars"]["ssh"]["known_hosts"] == part["known_hosts"]
        assert "databases" in inventory["groups"] and "lab_host" in inventory["targets"]
        assert Path(part["known_hosts"]).read_text().startswith(f"[127.0.0.1]:{part['port']} ssh-ed25519 ")
        assert oct(Path(part["key"]).stat().st_mode & 0o777) == "0o600"
        sshd = lab_status(lab_dir)["services"]["sshd"]
        assert sshd["running"] and sshd["port"] == part["port"]

        write_runbook(tmp_path, """
            name: lab fleet
            steps:
              - id: whoami
                target: db_hosts
                parallel: 5
                command: [id, -un]
                register: who
              - assert: {that: "who.results | map(attribute='stdout') | unique | list == [ssh_user]"}
        """)
        done = runbook_cli("run", "runbook.yaml", "-i", state["inventory"], "--state-dir", "state",
                           cwd=tmp_path)
        assert done.rc == 0, done.output
    finally:
        stopped = lab_down(lab_dir)
    assert "sshd" in stopped["stopped"]
    assert not Path(part["runtime"]).exists() and not Path(part["key"]).exists()
    assert subprocess.run(["pgrep", "-f", part["config"]], capture_output=True).returncode == 1


def test_help_validate_and_a_local_run_do_not_import_asyncssh(tmp_path):
    write_runbook(tmp_path, """
        name: local and remote steps
        steps:
          - {id: local, command: ['true']}
          - {id: remote, target: "{{ 'nowhere' if false else 'local' }}", command: ['true'], when: false}
    """)
    probe = f"""
import sys
from click.testing import CliRunner
from engine.cli.app import cli
runner = CliRunner()
assert runner.invoke(cli, ["--help"]).exit_code == 0
assert runner.invoke(cli, ["schema"]).exit_code == 0
result = runner.invoke(cli, ["validate", {str(tmp_path / 'runbook.yaml')!r}])
assert result.exit_code == 0, result.output
result = runner.invoke(cli, ["actions", "ssh.copy"])
assert result.exit_code == 0, result.output
print("loaded:", sorted(m for m in sys.modules if m.split(".")[0] == "asyncssh"))
"""
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "loaded: []" in done.stdout


def test_lab_down_also_ends_logins_that_are_still_open():
    """A login the server has not ended by itself (seen after a benchmark: sshd session
    processes orphaned, in sessions of their own) must not outlive ``lab down``. Such a
    process is recognised by its standard error: the lab's sshd.log."""
    from engine.lab import ssh as part
    from engine.lab.parts import LabContext

    _require_sshd()
    base = Path(tempfile.mkdtemp(prefix="runbook-ssh-down-"))  # pytest's tmp_path is 0700
    base.chmod(0o755)
    (base / "lab").mkdir()
    lab = LabContext(base / "lab", base / "runtime", {}, lambda state: None)
    state = part.up(lab)
    log = Path(state["runtime"]) / "sshd.log"
    try:
        with open(log, "ab") as stderr:  # an orphaned session: own session, stderr = the log
            orphan = subprocess.Popen(["bash", "-c", "exec -a 'sshd: runbook-lab@notty' sleep 60"],
                                      stderr=stderr, start_new_session=True)
        deadline = time.monotonic() + 5
        while orphan.pid not in part._session_pids(log) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert orphan.pid in part._session_pids(log)
    finally:
        part.down(lab, state)
        shutil.rmtree(base, ignore_errors=True)
    assert orphan.wait(timeout=10) == -15  # terminated by lab down
