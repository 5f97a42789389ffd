"""Lab part "inbox": where a drill's notifications go instead of real people.

``runbook lab up --with inbox`` starts, in a background process
(``python -m engine.lab.inbox serve --config FILE``), the servers of
:mod:`engine.lab.inbox_servers` on 127.0.0.1 — an HTTP receiver answering like
Slack (webhooks and chat.postMessage), PagerDuty Events v2, Statuspage v1 and
generic webhooks, and SMTP servers with STARTTLS, implicit TLS and none (a
self-signed certificate made with openssl, SAN 127.0.0.1) — and adds targets
for them to the lab inventory (``incidents``, ``executive_updates``,
``incidents_api``, ``oncall``, ``incident_team_mail``, ``customers_mail``,
``management_mail``, ``mail_implicit``, ``mail_plain``, ``status_page``,
``webhook``). Their credentials are inventory secrets read from files
(0600), so runs mask them. ``runbook lab inbox`` lists what was received.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine.errors import LabError
from engine.lab.processes import pid_alive, terminate

STARTUP_TIMEOUT = 20.0
COMPONENTS = ["API", "Web App", "Database", "Background Jobs"]
SMTP_USER = "runbook"
SENDER = "dr-runbook@company.com"
SECRET_NAMES = ("slack_webhook", "slack_exec_webhook", "slack_token", "pagerduty_key",
                "smtp_password", "statuspage_key", "webhook_secret")


# --- configuration: ports, credentials, certificate ---

def make_config(directory: Path) -> dict:
    """A fresh inbox configuration in ``directory``: free ports, new credentials, a cert."""
    directory.mkdir(parents=True, exist_ok=True)
    http_port, starttls, implicit, plain = free_ports(4)
    cert, key = make_certificate(directory)
    creds = {"slack_webhook": f"/services/T0LAB/B0INCIDENTS/{secrets.token_urlsafe(18)}",
             "slack_exec_webhook": f"/services/T0LAB/B0EXECUTIVE/{secrets.token_urlsafe(18)}",
             "slack_token": "xoxb-lab-" + secrets.token_hex(12),
             "pagerduty_key": secrets.token_hex(16), "smtp_password": secrets.token_urlsafe(12),
             "statuspage_key": secrets.token_hex(16), "webhook_secret": secrets.token_hex(16)}
    url = f"http://127.0.0.1:{http_port}"
    creds["slack_webhook"] = url + creds["slack_webhook"]
    creds["slack_exec_webhook"] = url + creds["slack_exec_webhook"]
    return {
        "dir": str(directory), "records": str(directory / "received.jsonl"), "url": url,
        "http_port": http_port, "cert": cert, "key": key, "credentials": creds,
        "smtp_ports": {"starttls": starttls, "implicit": implicit, "plain": plain},
        "smtp_user": SMTP_USER, "smtp_password": creds["smtp_password"],
        "slack_webhooks": {_path(creds["slack_webhook"]): "#incidents",
                           _path(creds["slack_exec_webhook"]): "#executive-updates"},
        "slack_token": creds["slack_token"], "pagerduty_keys": {creds["pagerduty_key"]: "oncall"},
        "statuspage": {"page_id": "lab" + secrets.token_hex(4), "api_key": creds["statuspage_key"],
                       "components": list(COMPONENTS)},
        "webhook_secret": creds["webhook_secret"],
    }


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def free_ports(count: int) -> list[int]:
    """Distinct TCP ports free on 127.0.0.1 now (aiosmtpd cannot take port 0)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def make_certificate(directory: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and localhost (openssl), valid 30 days."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        done = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise LabError("the inbox needs openssl for its TLS certificate "
                       "(apt-get install openssl)") from None
    if done.returncode != 0:
        raise LabError(f"openssl could not make the inbox certificate: {done.stderr.strip()[-300:]}")
    os.chmod(key, 0o600)
    return str(cert), str(key)


def write_secrets(config: dict) -> dict:
    """One 0600 file per credential; the inventory's ``secrets:`` entries pointing at them."""
    folder = Path(config["dir"]) / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    refs = {}
    for name in SECRET_NAMES:
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(config["credentials"][name] + "\n")
        refs[f"inbox_{name}"] = {"file": str(path)}
    return refs


# --- the inventory ---

def inventory_for(config: dict, secret_refs: dict) -> dict:
    """Targets for every inbox service; credentials as ``{{ secrets.inbox_… }}``."""
    url, ports = config["url"], config["smtp_ports"]

    def mail(to: list[str], tls: str = "starttls", port: int = ports["starttls"],
             auth: bool = True, sender: str = SENDER) -> dict:
        block = {"host": "127.0.0.1", "port": port, "tls": tls, "from": sender, "to": to}
        if tls != "none":
            block["ca_file"] = config["cert"]
        if auth:
            block.update(user=SMTP_USER, password="{{ secrets.inbox_smtp_password }}")
        return {"email": block}

    page = config["statuspage"]
    return {
        "vars": {"inbox_dir": config["dir"], "inbox_url": url},
        "secrets": secret_refs,
        "targets": {
            "incidents": {"slack": {"webhook": "{{ secrets.inbox_slack_webhook }}",
                                    "channel": "#incidents"}},
            "executive_updates": {"slack": {"webhook": "{{ secrets.inbox_slack_exec_webhook }}",
                                            "channel": "#executive-updates"}},
            "incidents_api": {"slack": {"token": "{{ secrets.inbox_slack_token }}",
                                        "channel": "#incidents", "api_base": url + "/api"}},
            "oncall": {"pagerduty": {"routing_key": "{{ secrets.inbox_pagerduty_key }}",
                                     "events_url": url + "/v2/enqueue"}},
            "incident_team_mail": mail(["incident-team@company.com"]),
            "customers_mail": mail(["customers@company.com"], sender="support@company.com"),
            "management_mail": mail(["manager@company.com", "cto@example.com"]),
            "mail_implicit": mail(["incident-team@company.com"], "implicit", ports["implicit"]),
            "mail_plain": mail(["incident-team@company.com"], "none", ports["plain"], auth=False),
            "status_page": {"statuspage": {"api_base": url + "/v1", "page_id": page["page_id"],
                                           "api_key": "{{ secrets.inbox_statuspage_key }}"}},
            "webhook": {"webhook": {"url": url + "/hooks/signed/runbook",
                                    "secret": "{{ secrets.inbox_webhook_secret }}"}},
        },
    }


# --- the lab part interface (engine.lab.parts) ---

def up(lab) -> dict:
    import importlib.util

    if importlib.util.find_spec("aiosmtpd") is None:  # the background process needs it
        raise LabError("the inbox needs aiosmtpd (pip install aiosmtpd, or the 'test' extra)")
    directory = Path(lab.lab_dir) / "inbox"
    config = make_config(directory)
    config_file = directory / "config.json"
    fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(config, handle)
    state = {"dir": str(directory), "config": str(config_file), "records": config["records"],
             "url": config["url"], "http_port": config["http_port"],
             "smtp_ports": config["smtp_ports"], "pid": None,
             "pid_file": str(Path(lab.runtime_dir) / "inbox.pid")}
    state["pid"] = _spawn(config_file, directory / "inbox.log")
    Path(state["pid_file"]).write_text(f"{state['pid']}\n")
    lab.save(state)
    _wait_ready(config, state["pid"], directory / "inbox.log")
    state["secret_refs"] = write_secrets(config)
    lab.save(state)
    return state


def _spawn(config_file: Path, log: Path) -> int:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # this checkout's engine, whatever the cwd
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "engine.lab.inbox", "serve",
                                    "--config", str(config_file)], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=out, start_new_session=True, env=env)
    return process.pid


def _wait_ready(config: dict, pid: int, log: Path) -> None:
    ports = [config["http_port"], *config["smtp_ports"].values()]
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            raise LabError(f"the inbox exited at start; see {log}")
        if all(_listening(port) for port in ports):
            return
        time.sleep(0.05)
    raise LabError(f"the inbox did not listen within {STARTUP_TIMEOUT:.0f} s; see {log}")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def down(lab, state: dict | None) -> list[str]:
    pid_file = Path(lab.runtime_dir) / "inbox.pid"
    pid = (state or {}).get("pid")
    if pid is None and pid_file.exists():
        try:
            pid = int(pid_file.read_text().strip())
        except ValueError:
            pid = None
    stopped = []
    if pid and _ours(pid):
        terminate(pid)
        stopped.append("inbox")
    pid_file.unlink(missing_ok=True)
    return stopped


def _ours(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return "engine.lab.inbox" in cmdline and "serve" in cmdline and pid_alive(pid)


def status(state: dict) -> dict[str, dict]:
    running = bool(state.get("pid")) and _ours(state["pid"])
    count = len(received(state["records"])) if running else 0
    return {"inbox": {"running": running, "pid": state["pid"] if running else None,
                      "port": state["http_port"],
                      "detail": f"http {state['url']}, smtp ports "
                                f"{', '.join(f'{k} {v}' for k, v in state['smtp_ports'].items())}"
                                f"; {count} received"}}


def inventory(state: dict) -> dict:
    config = json.loads(Path(state["config"]).read_text())
    return inventory_for(config, state.get("secret_refs") or {})


def snapshot(state: dict) -> dict:
    """What `runbook drill` compares around a rehearsal: every delivery the inbox received
    (read-only look-ups, such as a status page's component list, are not changes)."""
    return {"received": [{k: v for k, v in entry.items() if k not in ("time", "ts")}
                         for entry in received(state["records"])]}


# --- what was received ---

def received(records: str | Path, include_lookups: bool = False) -> list[dict]:
    """Every recorded delivery, oldest first (read-only look-ups left out unless asked)."""
    try:
        lines = Path(records).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if include_lookups or not entry.get("lookup"):
            entries.append(entry)
    return entries


def lab_records(lab_dir: Path) -> str:
    """The records file of the inbox of the lab in ``lab_dir`` (LabError when there is none)."""
    from engine.lab.sandbox import STATE_FILE

    try:
        state = json.loads((Path(lab_dir).resolve() / STATE_FILE).read_text())
    except (OSError, ValueError):
        raise LabError(f"no lab in {lab_dir} (run `runbook lab up --with inbox --dir "
                       f"{lab_dir}`)") from None
    part = (state.get("parts") or {}).get("inbox")
    if not part:
        raise LabError(f"the lab in {lab_dir} has no inbox (start it with "
                       f"`runbook lab up --with inbox`)")
    return part["records"]


# --- the background process ---

def serve(config_file: str) -> None:
    """Run every inbox server until SIGTERM."""
    from engine.lab.inbox_servers import Inbox

    config = json.loads(Path(config_file).read_text())
    inbox = Inbox(config).start()
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    try:
        while not stop["now"]:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    inbox.stop()


if __name__ == "__main__":  # python -m engine.lab.inbox serve --config FILE
    if len(sys.argv) != 4 or sys.argv[1:3] != ["serve", "--config"]:
        sys.exit("usage: python -m engine.lab.inbox serve --config FILE")
    serve(sys.argv[3])
