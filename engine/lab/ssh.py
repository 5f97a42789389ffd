"""The lab part ``ssh``: a real OpenSSH server on loopback, for remote steps and fleets.

``runbook lab up --with ssh`` starts ``/usr/sbin/sshd`` as an unprivileged user
(``runbook-lab`` when the lab runs as root — created once, kept afterwards —
else the current user: a non-root sshd can only log in as its own user) on
127.0.0.1 and a free high port, with its own ed25519 host key and one
authorized client key. It adds to the lab inventory:

- the group ``db_hosts`` with the targets ``db1`` … ``db5``, all pointing at
  this one sshd (five kept connections: enough to exercise fan-out, ``parallel``
  and ``--limit``);
- the target ``lab_host`` (the same server, for single-host steps);
- the vars ``ssh_work_dir`` (a directory the lab user may write) and
  ``ssh_user``.

Layout::

    DIR/ssh/id_ed25519        the client's private key (0600, the operator's)
    DIR/ssh/known_hosts       ``[127.0.0.1]:PORT ssh-ed25519 …``: host keys are checked
    RUNTIME-ssh/              owned by the lab user: sshd_config, host key,
                              authorized_keys, sshd.pid, sshd.log, work/

The sshd's runtime dir sits beside the lab's runtime dir (which belongs to the
PostgreSQL user, 0700, where the sshd user could not reach it).
"""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from engine.errors import LabError
from engine.lab.parts import LabContext
from engine.lab.processes import pid_alive, terminate

SSHD = "/usr/sbin/sshd"
LAB_USER = "runbook-lab"
FLEET = ("db1", "db2", "db3", "db4", "db5")
GROUP = "db_hosts"
STARTUP_TIMEOUT = 10.0


def up(lab: LabContext) -> dict:
    """Start the sshd; return its state (port, pid, key paths)."""
    _require_tools()
    account = _lab_account()
    runtime, client_dir = _prepare_dirs(lab, account)
    host_key = _keygen(runtime / "ssh_host_ed25519_key", "runbook-lab host")
    client_key = _keygen(client_dir / "id_ed25519", "runbook-lab client")
    (runtime / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = _free_port()
    config = _write_config(runtime, port)
    _give_to(runtime, account)
    state = {"port": port, "user": account.pw_name, "runtime": str(runtime),
             "config": str(config), "key": str(client_key), "pid": None,
             "known_hosts": str(client_dir / "known_hosts"), "work_dir": str(runtime / "work"),
             "host_key_fingerprint": _fingerprint(f"{host_key}.pub")}
    _write_known_hosts(Path(state["known_hosts"]), port, Path(f"{host_key}.pub"))
    lab.save(state)
    state["pid"] = _start_sshd(config, runtime, account)
    lab.save(state)
    _wait_listening(port, state["pid"], runtime / "sshd.log")
    return state


def down(lab: LabContext, state: dict | None) -> list[str]:
    """Stop the sshd (found through its pid file when the record was lost) and remove its files."""
    runtime = Path(state["runtime"]) if state else _runtime_dir(lab)
    pid = (state or {}).get("pid") or _pid_from_file(runtime / "sshd.pid")
    stopped = []
    if pid and _is_our_sshd(pid, runtime):
        terminate(pid)
        stopped.append("sshd")
    for session in _session_pids(runtime / "sshd.log"):
        terminate(session)  # a login still open (a client that kept its connection)
    shutil.rmtree(runtime, ignore_errors=True)
    shutil.rmtree(lab.lab_dir / "ssh", ignore_errors=True)
    return stopped


def status(state: dict) -> dict[str, dict]:
    pid = state.get("pid")
    running = bool(pid) and _is_our_sshd(pid, Path(state["runtime"])) and _port_open(state["port"])
    return {"sshd": {"running": running, "pid": pid, "port": state["port"],
                     "detail": f"{state['user']}@127.0.0.1:{state['port']} "
                               f"({len(FLEET)} targets in {GROUP}, host key "
                               f"{state['host_key_fingerprint']})"}}


def inventory(state: dict) -> dict:
    """``db_hosts`` (db1..db5) and ``lab_host``, all on this sshd, with host keys checked."""
    ssh = {"host": "127.0.0.1", "port": state["port"], "user": state["user"],
           "key": state["key"], "known_hosts": state["known_hosts"], "connect_timeout": 5}
    return {"groups": {GROUP: {"vars": {"ssh": ssh}, "targets": {name: {} for name in FLEET}}},
            "targets": {"lab_host": {"ssh": dict(ssh)}},
            "vars": {"ssh_work_dir": state["work_dir"], "ssh_user": state["user"]}}


# --- the account and the files ---

def _require_tools() -> None:
    missing = [tool for tool in (SSHD, shutil.which("ssh-keygen")) if not tool or not os.path.exists(tool)]
    if missing:
        raise LabError("the ssh lab needs the OpenSSH server (sshd) and ssh-keygen: "
                       "apt-get install openssh-server")


def _lab_account() -> pwd.struct_passwd:
    """``runbook-lab`` (created when missing) when we are root, else ourselves."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam(LAB_USER)
    except KeyError:
        pass
    # '*' keeps the account usable by key (a '!' locked account is refused by sshd)
    _run(["useradd", "--system", "--create-home", "--home-dir", f"/var/lib/{LAB_USER}",
          "--shell", "/bin/sh", "--password", "*", LAB_USER], "create the lab user")
    return pwd.getpwnam(LAB_USER)


def _runtime_dir(lab: LabContext) -> Path:
    return Path(f"{lab.runtime_dir}-ssh")


def _prepare_dirs(lab: LabContext, account) -> tuple[Path, Path]:
    runtime = _runtime_dir(lab)
    shutil.rmtree(runtime, ignore_errors=True)
    (runtime / "work").mkdir(parents=True)
    client_dir = lab.lab_dir / "ssh"
    shutil.rmtree(client_dir, ignore_errors=True)
    client_dir.mkdir(mode=0o700, parents=True)
    return runtime, client_dir


def _give_to(runtime: Path, account) -> None:
    for path in (runtime, *runtime.rglob("*")):
        os.chown(path, account.pw_uid, account.pw_gid)
    runtime.chmod(0o755)


def _keygen(path: Path, comment: str) -> Path:
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
         f"generate {path.name}")
    return path


def _fingerprint(public_key: str) -> str:
    out = _run(["ssh-keygen", "-l", "-E", "sha256", "-f", public_key], "fingerprint the host key")
    return out.split()[1]


def _write_known_hosts(path: Path, port: int, host_pub: Path) -> None:
    kind, blob = host_pub.read_text().split()[:2]
    path.write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")


def _write_config(runtime: Path, port: int) -> Path:
    config = runtime / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress 127.0.0.1:{port}",
        f"HostKey {runtime / 'ssh_host_ed25519_key'}",
        f"PidFile {runtime / 'sshd.pid'}",
        f"AuthorizedKeysFile {runtime / 'authorized_keys'}",
        "UsePAM no", "StrictModes no", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        # local forwarding: wait_for probes ports from the host through direct-tcpip
        "PermitRootLogin no", "X11Forwarding no", "AllowTcpForwarding local",
        "PrintMotd no", "PrintLastLog no", "UseDNS no",
        # fan-out: five connections at once, and many channels on each
        "MaxStartups 50:30:100", "MaxSessions 50",
        f"Subsystem sftp {_sftp_server()}", "LogLevel INFO", ""]))
    return config


def _sftp_server() -> str:
    for candidate in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                      "/usr/libexec/sftp-server"):
        if os.path.exists(candidate):
            return candidate
    return "internal-sftp"


# --- the server process ---

def _start_sshd(config: Path, runtime: Path, account) -> int:
    """sshd in the foreground (-D) as the lab user: its pid is the server's."""
    as_user = {}
    if os.geteuid() == 0:
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    log = open(runtime / "sshd.log", "ab")
    try:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=log, start_new_session=True, cwd=runtime,
                                   **as_user)
    except OSError as exc:
        raise LabError(f"cannot start sshd: {exc}") from None
    finally:
        log.close()
    return process.pid


def _wait_listening(port: int, pid: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        if not pid_alive(pid):
            raise LabError(f"sshd exited at start-up: {_log_tail(log)}")
        time.sleep(0.02)
    raise LabError(f"sshd is not listening on 127.0.0.1:{port} after {STARTUP_TIMEOUT:.0f} s")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _pid_from_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_sshd(pid: int, runtime: Path) -> bool:
    """Only signal a pid whose command line names this lab's config (never another sshd)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return pid_alive(pid) and str(runtime / "sshd_config") in cmdline


def _session_pids(log: Path) -> list[int]:
    """The per-connection sshd processes of this lab: they run in sessions of their own,
    and are known by their standard error, which is the lab's sshd.log."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if (os.readlink(f"/proc/{entry}/fd/2").removesuffix(" (deleted)") == str(log)
                    and Path(f"/proc/{entry}/cmdline").read_bytes().startswith(b"sshd")):
                found.append(int(entry))
        except OSError:
            continue
    return found


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(lines[-3:]) or "(empty log)"


def _run(argv: list[str], what: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"cannot {what}: {exc}") from None
    if done.returncode != 0:
        raise LabError(f"cannot {what}: {(done.stderr or done.stdout).strip()[:300]}")
    return done.stdout
