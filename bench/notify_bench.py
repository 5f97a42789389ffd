#!/usr/bin/env python3
"""What does a notification cost through the engine? The seeds' communication plan
(``playbooks/communication-drill.yaml``: 14 deliveries — Slack, PagerDuty, e-mail over
STARTTLS with AUTH, Statuspage) against the same deliveries as a bash script of ``curl``
calls (the seeds' own tool: 004's ``update-status-page.sh``), and one Slack message.

    python bench/notify_bench.py             # 5 timed runs of each
    python bench/notify_bench.py --runs 3

The inbox (``engine.lab.inbox_servers.Inbox``) runs in this process on 127.0.0.1, so
both sides talk to the same real servers. Timed, after one untimed warm-up round, in
alternating order (engine first, then bash first ...): the whole process of

- engine: ``python -m engine run PLAYBOOK -i INVENTORY --state-dir FRESH`` (its journal
  fsync'd), also ``--dry-run`` (which sends nothing: bash has no equivalent);
- bash: ``curl`` per delivery — Slack webhooks, PagerDuty trigger/resolve, Statuspage
  create/patch/patch (component ids known in advance: the engine looks them up), and
  ``curl smtp://… --ssl-reqd --user …`` per e-mail.

Writes ``bench/RESULTS-notify.md``. Stdlib only, plus this checkout's engine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PLAYBOOK = ROOT / "playbooks" / "communication-drill.yaml"
RESULTS = BENCH / "RESULTS-notify.md"
sys.path.insert(0, str(ROOT))

ONE_SLACK = "name: one\nsteps:\n  - {target: incidents, notify.slack: {text: 'INCIDENT DETECTED'}}\n"


def bash_drill(config: dict) -> str:
    """The drill's 14 deliveries as curl calls (secrets come from the environment)."""
    page, ports = config["statuspage"], config["smtp_ports"]
    url = config["url"]
    post = 'curl -sf -o /dev/null -X {m} -H "Content-Type: application/json" {h} -d {d} "{u}"'
    slack = post.format(m="POST", h="", d="'{\"text\": \"%s\"}'", u="$SLACK")
    pd = post.format(m="POST", h="", u=url + "/v2/enqueue",
                     d="'{\"routing_key\": \"'$PD'\", \"event_action\": \"%s\", \"dedup_key\": "
                       "\"bench\", \"payload\": {\"summary\": \"down\", \"source\": \"bench\", "
                       "\"severity\": \"critical\"}}'")
    auth = '-H "Authorization: OAuth $SP"'
    sp_id = (f'ID=$(curl -sf -X POST {auth} -H "Content-Type: application/json" -d '
             f"'{{\"incident\": {{\"name\": \"Service disruption\"}}}}' "
             f'"{url}/v1/pages/{page["page_id"]}/incidents" | python3 -c "import json,sys; '
             f'print(json.load(sys.stdin)[\'id\'])")')
    sp_patch = post.format(m="PATCH", h=auth, u=f"{url}/v1/pages/{page['page_id']}/incidents/$ID",
                           d="'{\"incident\": {\"status\": \"%s\"}}'")
    mail = (f'printf "Subject: %s\\r\\n\\r\\nbody\\r\\n" | curl -sf --url smtp://127.0.0.1:'
            f'{ports["starttls"]} --ssl-reqd --cacert "{config["cert"]}" --user "runbook:$SMTP" '
            f'--mail-from dr-runbook@company.com --mail-rcpt %s --upload-file -')
    lines = ["set -e", slack % "declared", pd % "trigger", mail % ("declared", "team@company.com"),
             mail % ("brief", "manager@company.com"), sp_id, mail % ("customers", "c@company.com"),
             slack % "progress", sp_patch % "identified", mail % ("progress", "manager@company.com"),
             slack % "restored", sp_patch % "resolved", pd % "resolve",
             mail % ("resolved", "c@company.com"), mail % ("resolved", "manager@company.com")]
    return "\n".join(lines) + "\n"


def timed(argv: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds of the process tree)."""
    import resource

    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return elapsed, (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    from engine.lab.inbox import inventory_for, make_config, write_secrets
    from engine.lab.inbox_servers import Inbox

    work = Path(tempfile.mkdtemp(prefix="notify-bench-"))
    config = make_config(work / "inbox")
    inbox = Inbox(config).start()
    inventory = work / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(inventory_for(config, write_secrets(config))))
    (work / "drill.sh").write_text(bash_drill(config))
    (work / "one.yaml").write_text(ONE_SLACK)
    creds = config["credentials"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNBOOK_OPERATOR": "bench",
           "SLACK": creds["slack_webhook"], "PD": creds["pagerduty_key"],
           "SP": creds["statuspage_key"], "SMTP": creds["smtp_password"]}
    engine = [sys.executable, "-m", "engine", "run"]
    cases = {
        "drill: engine": lambda n: engine + [str(PLAYBOOK), "-i", str(inventory),
                                             "--state-dir", str(work / f"s{n}")],
        "drill: bash + curl": lambda n: ["bash", str(work / "drill.sh")],
        "drill: engine --dry-run": lambda n: engine + [str(PLAYBOOK), "-i", str(inventory),
                                                       "--dry-run", "--state-dir",
                                                       str(work / f"d{n}")],
        "one slack message: engine": lambda n: engine + [str(work / "one.yaml"), "-i",
                                                         str(inventory), "--state-dir",
                                                         str(work / f"o{n}")],
        "one slack message: curl": lambda n: ["bash", "-c", 'curl -sf -o /dev/null -H '
                                              '"Content-Type: application/json" -d '
                                              '\'{"text": "INCIDENT DETECTED"}\' "$SLACK"'],
    }
    load_before = os.getloadavg()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    try:
        for run in range(options.runs + 1):
            order = list(cases) if run % 2 == 0 else list(reversed(cases))
            for name in order:
                elapsed = timed(cases[name](run), env, work)
                if run:  # the first round warms caches up
                    times[name].append(elapsed)
    finally:
        inbox.stop()
    write_results(times, options.runs, load_before, os.getloadavg())


def write_results(times: dict, runs: int, before, after) -> None:
    median = {name: statistics.median(v[0] for v in values) for name, values in times.items()}
    cpu = {name: statistics.median(v[1] for v in values) for name, values in times.items()}
    rows = [f"| {name} | {median[name] * 1000:.0f} ms | {cpu[name] * 1000:.0f} ms | "
            f"{', '.join(f'{v[0] * 1000:.0f}' for v in values)} |"
            for name, values in times.items()]
    drill = median["drill: engine"] / median["drill: bash + curl"]
    one = median["one slack message: engine"] / median["one slack message: curl"]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    RESULTS.write_text(f"""# Notify benchmark: the seeds' communication plan, engine vs. curl

Written by `python bench/notify_bench.py --runs {runs}` on {stamp}. What and how: the
docstring of `bench/notify_bench.py`. Whole processes, wall clock, median of {runs} runs
after a warm-up round; load average before {before[0]:.2f}, after {after[0]:.2f} (2 cores,
shared with other work: read the ratios, not the last millisecond).

| case | median wall clock | median CPU (process tree) | runs, wall clock (ms) |
|---|---|---|---|
{chr(10).join(rows)}

- The drill (14 deliveries): engine / bash+curl = **{drill:.2f}** (CPU:
  {cpu["drill: engine"] / cpu["drill: bash + curl"]:.2f}). The engine's run
  also writes and fsyncs its journal (about 30 events), looks up the status page's
  component ids, checks every payload before sending and masks every secret.
- One Slack message: engine / curl = **{one:.2f}** — the Python interpreter and the
  engine's start-up (imports, validation, journal), paid once per run, not per message:
  each of the drill's 13 further deliveries costs about
  {(cpu["drill: engine"] - cpu["one slack message: engine"]) / 13 * 1000:.0f} ms of CPU
  (bash + curl: {cpu["drill: bash + curl"] / 14 * 1000:.0f} ms per delivery, a process each).
- `--dry-run` renders and checks all 14 deliveries and sends none: bash has no such mode.
""")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
