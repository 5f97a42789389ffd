#!/usr/bin/env python3
"""What does the engine cost on a real restore? ``playbooks/database-recovery.yaml``
against the same steps as a plain bash script, on a ~1 GB-class database.

    python bench/restore_bench.py              # 4 M rows, ~2 GB database, 3 timed runs each
    python bench/restore_bench.py --scale 0.1  # a quick smoke (~1 min)
    python bench/restore_bench.py --runs 5 --keep-lab

Set-up (untimed): a lab of its own (``engine.lab.sandbox.lab_up``) in a temporary dir;
its replica is stopped (both sides would pay for the WAL it replays, and on a
2-core machine it only adds noise) and autovacuum is turned off (a background
ANALYZE of the freshly restored tables would land in the next run). Then the
lab database ``erp`` gets ``users`` (1 M rows), ``orders`` (1 M) and ``events``
(2 M rows with a 768-character payload) at ``--scale 1``, and is dumped once
with ``pg_dump -Fc`` plus a ``sha256sum`` file.

Timed in pairs after one untimed warm-up pair, the order alternating (engine
first, then bash first, ...: a drift in the machine's load favours neither),
with a CHECKPOINT before every run:

- engine: ``runbook run playbooks/database-recovery.yaml -i LAB -e backup_file=DUMP
  -e expected_users=N --answers A`` — the console script next to this
  interpreter, a fresh ``--state-dir`` each run (its journal is fsync'd);
- bash: the same steps as a script — ``sha256sum -c``, check the server is a
  primary (``psql``), app to 503 (``curl``), ``pg_restore --clean --if-exists
  --exit-on-error``, ``psql -c 'select count(*) from users'`` compared with N,
  app back to 200, health check (``curl``).

Every number is the wall-clock time of the whole process. Reported: each run,
the medians, engine/bash, pg_restore itself vs. everything else on each side
(pg_restore carries most of the noise), the client-side CPU time, and the
engine's time per step (from its journal). The machine should be otherwise
idle: the load average before and after is in the report.
Writes ``bench/RESULTS-restore.md`` (raw data: ``bench/work/restore/results.json``, gitignored).
Stdlib only, plus the engine installed in this interpreter.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "RESULTS-restore.md"
WORK = BENCH / "work" / "restore"  # gitignored
PLAYBOOK = ROOT / "playbooks" / "database-recovery.yaml"
TARGET_OVERHEAD = 0.05

BASE_ROWS = {"users": 1_000_000, "orders": 1_000_000, "events": 2_000_000}
PAYLOAD_MD5S = 24  # 24 x 32 hex characters = 768 per event

BASH_RESTORE = r"""#!/usr/bin/env bash
# The steps of playbooks/database-recovery.yaml, by hand; prints when each step ended.
set -euo pipefail
backup=$1 dsn=$2 admin=$3 health=$4 expected=$5
t0=$EPOCHREALTIME
(cd "$(dirname "$backup")" && sha256sum -c --quiet "$(basename "$backup").sha256")
t1=$EPOCHREALTIME
[ "$(psql "$dsn" -XAtc 'select pg_is_in_recovery()')" = f ]
curl -fsS -X POST "$admin?code=503" | grep -q '"code": 503'
t2=$EPOCHREALTIME
pg_restore --clean --if-exists --exit-on-error --no-password -d "$dsn" "$backup"
t3=$EPOCHREALTIME
n=$(psql "$dsn" -XAtc 'select count(*) from users')
[ "$n" -eq "$expected" ] || { echo "users: $n rows, expected $expected" >&2; exit 1; }
curl -fsS -X POST "$admin?code=200" | grep -q '"code": 200'
curl -fsS "$health" >/dev/null
t4=$EPOCHREALTIME
echo "times $t0 $t1 $t2 $t3 $t4"
"""


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def runbook_command() -> list[str]:
    """The console script pip installed next to this interpreter (not a version-manager shim)."""
    script = Path(sys.executable).parent / "runbook"
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine"]


# --------------------------------------------------------------------------
# The lab and its data
# --------------------------------------------------------------------------

def lab_dir() -> Path:
    return Path(tempfile.gettempdir()) / "runbook-bench-restore"


def sql_connect(state: dict, dbname: str = "erp"):
    import psycopg

    dsn = state["primary"]["admin_dsn"].replace("dbname=postgres", f"dbname={dbname}")
    return psycopg.connect(dsn, autocommit=True)


def as_server_user(state: dict, argv: list[str]) -> list[str]:
    if os.geteuid() == 0 and state["os_user"] != "root":
        return ["runuser", "-u", state["os_user"], "--"] + argv
    return argv


def quiet_lab(state: dict) -> None:
    """Stop the replica and turn autovacuum off: fewer things competing with the restore."""
    pg_ctl = str(Path(state["pg_bin_dir"]) / "pg_ctl")
    subprocess.run(as_server_user(state, [pg_ctl, "stop", "-D", state["replica"]["data_dir"],
                                          "-m", "fast", "-w"]), check=True, cwd="/",
                   capture_output=True)
    with sql_connect(state, "postgres") as conn:
        conn.execute("ALTER SYSTEM SET autovacuum = off")
        conn.execute("ALTER SYSTEM SET max_wal_size = '4GB'")
        conn.execute("SELECT pg_reload_conf()")


def generate(state: dict, rows: dict[str, int]) -> None:
    payload = " || ".join(f"md5((i * {k + 1})::text || 'p{k}')" for k in range(PAYLOAD_MD5S))
    statements = [
        "SET synchronous_commit = off",
        "TRUNCATE orders, users RESTART IDENTITY",
        "DROP TABLE IF EXISTS events",
        f"""INSERT INTO users (name, email, balance, active, created_at)
            SELECT 'User ' || i, 'user' || i || '@example.com', ((i % 100000) * 0.25)::numeric(12,2),
                   i % 7 <> 0, timestamptz '2020-01-01 00:00:00+00' + i * interval '1 minute'
            FROM generate_series(1::bigint, {rows['users']}) AS i""",
        f"""INSERT INTO orders (user_id, amount, placed_at)
            SELECT 1 + (i * 7919) % {rows['users']}, (i % 997) + 0.99,
                   timestamptz '2021-01-01 00:00:00+00' + i * interval '10 seconds'
            FROM generate_series(1::bigint, {rows['orders']}) AS i""",
        """CREATE TABLE events (id bigserial PRIMARY KEY, user_id bigint NOT NULL,
               kind text NOT NULL, at timestamptz NOT NULL, payload text NOT NULL)""",
        f"""INSERT INTO events (user_id, kind, at, payload)
            SELECT 1 + (i * 104729) % {rows['users']}, (ARRAY['login', 'view', 'order', 'logout'])[1 + i % 4],
                   timestamptz '2022-01-01 00:00:00+00' + i * interval '1 second', {payload}
            FROM generate_series(1::bigint, {rows['events']}) AS i""",
        "ALTER TABLE events OWNER TO erp",
        "VACUUM ANALYZE",
        "CHECKPOINT",
    ]
    with sql_connect(state) as conn:
        for sql in statements:
            conn.execute(sql)


def database_bytes(state: dict) -> int:
    with sql_connect(state) as conn:
        return conn.execute("SELECT pg_database_size('erp')").fetchone()[0]


def dump(state: dict, path: Path) -> None:
    """pg_dump -Fc and a sha256sum file, as playbooks/backup.yaml writes them."""
    env = dict(os.environ, PGPASSFILE=state["passfile"])
    subprocess.run(["pg_dump", "-Fc", "-d", state["primary"]["dsn"], "-f", str(path)],
                   check=True, env=env)
    subprocess.run(f"sha256sum {path.name} > {path.name}.sha256", shell=True, check=True,
                   cwd=path.parent)


def checkpoint(state: dict) -> None:
    with sql_connect(state) as conn:
        conn.execute("CHECKPOINT")


# --------------------------------------------------------------------------
# The two contenders
# --------------------------------------------------------------------------

def run_engine(state: dict, backup: Path, expected: int, work: Path, index: int) -> dict:
    state_dir = work / f"state-{index}"
    shutil.rmtree(state_dir, ignore_errors=True)
    answers = work / "answers.yaml"
    answers.write_text("announce: {checklist: all}\n")
    argv = runbook_command() + [
        "run", str(PLAYBOOK), "-i", state["inventory"], "-e", f"backup_file={backup}",
        "-e", f"expected_users={expected}", "--answers", str(answers),
        "--state-dir", str(state_dir), "--operator", "bench", "--run-id", f"bench-{index}"]
    elapsed, cpu, done = timed(argv, work)
    steps, pg_restore = step_times(state_dir / "runs" / f"bench-{index}" / "journal.jsonl")
    return {"elapsed": elapsed, "cpu": cpu, "rc": done.returncode, "steps": steps,
            "pg_restore": pg_restore,
            "tail": (done.stdout + done.stderr)[-1500:]}


def run_bash(state: dict, backup: Path, expected: int, work: Path, index: int) -> dict:
    script = work / "restore.sh"
    script.write_text(BASH_RESTORE)
    argv = ["bash", str(script), str(backup), state["primary"]["dsn"], state["app"]["admin_url"],
            state["app"]["health_url"], str(expected)]
    elapsed, cpu, done = timed(argv, work)
    marks = [float(t) for line in done.stdout.splitlines() if line.startswith("times ")
             for t in line.split()[1:]]
    phases = {}
    if len(marks) == 5:
        phases = {"checksum": marks[1] - marks[0], "pg_restore": marks[3] - marks[2],
                  "other steps": (marks[2] - marks[1]) + (marks[4] - marks[3])}
    return {"elapsed": elapsed, "cpu": cpu, "rc": done.returncode, "phases": phases,
            "tail": (done.stdout + done.stderr)[-1500:]}


def timed(argv: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the process tree — the client side only: the
    server's backends are not our children, so pg_restore's COPY work on the
    server is not in it —, the finished process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=3600)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done


def step_times(journal: Path) -> tuple[dict[str, float], float | None]:
    """(seconds per step id, seconds of pg_restore itself) from the run's journal.

    ``postgres.restore`` times pg_restore alone and says so in its message
    ("restored 3 tables from ... in 19.1 s"); the rest of its step is the second
    checksum and the archive listing.
    """
    times: dict[str, float] = {}
    pg_restore = None
    try:
        lines = journal.read_text().splitlines()
    except OSError:
        return times, pg_restore
    for line in lines:
        event = json.loads(line)
        if event["type"] in ("step.succeeded", "step.failed") and event.get("step"):
            times[event["step"]["id"]] = float(event["data"].get("elapsed") or 0.0)
            found = re.search(r" in (\d+(?:\.\d+)?) s$", str(event["data"].get("message", "")))
            if event["step"]["id"] == "restore" and found:
                pg_restore = float(found.group(1))
    return times, pg_restore


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def decompose(data: dict, m_bash: float) -> str:
    """Whole-run times split into pg_restore itself and everything else.

    pg_restore is the same program on both sides and carries most of the
    run-to-run noise; what is left is the engine's real cost, measured with
    much less noise.
    """
    eng = [r for r in data["engine"] if r.get("pg_restore") is not None]
    bash = [r for r in data["bash"] if r.get("phases")]
    if not eng or not bash:
        return ""
    eng_pg = statistics.median(r["pg_restore"] for r in eng)
    bash_pg = statistics.median(r["phases"]["pg_restore"] for r in bash)
    eng_rest = statistics.median(r["elapsed"] - r["pg_restore"] for r in eng)
    bash_rest = statistics.median(r["elapsed"] - r["phases"]["pg_restore"] for r in bash)
    bash_sum = statistics.median(r["phases"]["checksum"] for r in bash)
    eng_sum = statistics.median(r["steps"].get("verify-backup", 0.0) for r in eng)
    recheck = statistics.median(r["steps"].get("restore", 0.0) - r["pg_restore"] for r in eng)
    extra = eng_rest - bash_rest
    # coreutils 9.1's sha256sum does not use the CPU's SHA extensions; Python's
    # hashlib (OpenSSL) does, as `openssl dgst -sha256` would in a script
    fair_extra = eng_rest - (bash_rest - bash_sum + eng_sum)
    return f"""## Without pg_restore's own noise (medians, seconds)

| | engine | bash |
|---|---|---|
| pg_restore itself (engine: as timed by `postgres.restore`, 0.1 s resolution) | {eng_pg:.2f} | {bash_pg:.2f} |
| everything else in the run | {eng_rest:.2f} | {bash_rest:.2f} |
| of which: the backup's checksum (`file.checksum` / `sha256sum -c`) | {eng_sum:.2f} | {bash_sum:.2f} |
| of which: `postgres.restore` around pg_restore (checksum again, `pg_restore -l`) | {recheck:.2f} | – |

The engine's own cost, with pg_restore taken out of both sides:
**{extra:+.2f} s = {extra / m_bash * 100:+.1f} %** of the bash run's median.

Part of that is the checksum tool, not the engine: coreutils' `sha256sum`
(9.1 here) does not use the CPU's SHA extensions, Python's `hashlib` (OpenSSL)
does — as `openssl dgst -sha256` would in a script. Give the script a checksum
as fast as the engine's and the engine's own cost becomes
**{fair_extra:+.2f} s = {fair_extra / m_bash * 100:+.1f} %**: mostly the second checksum inside
`postgres.restore` ({recheck:.2f} s) and the interpreter's start-up."""


def machine() -> dict:
    pg = subprocess.run(["pg_restore", "--version"], capture_output=True, text=True).stdout.strip()
    mem = ""
    try:
        kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines()
                      if l.startswith("MemTotal")).split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return {"cpus": os.cpu_count(), "memory": mem, "python": platform.python_version(),
            "platform": platform.platform(), "pg_restore": pg}


def human(size: int) -> str:
    return f"{size / (1 << 30):.2f} GiB" if size >= 1 << 30 else f"{size / (1 << 20):.0f} MiB"


def write_results(data: dict) -> None:
    eng = [r["elapsed"] for r in data["engine"]]
    bash = [r["elapsed"] for r in data["bash"]]
    m_eng, m_bash = statistics.median(eng), statistics.median(bash)
    ratio = m_eng / m_bash
    overhead = ratio - 1
    pair_ratio = statistics.median(e["elapsed"] / b["elapsed"] for e, b in zip(data["engine"], data["bash"]))
    cpu_eng = statistics.median(r["cpu"] for r in data["engine"])
    cpu_bash = statistics.median(r["cpu"] for r in data["bash"])
    verdict = "**met**" if overhead < TARGET_OVERHEAD else "**missed**"
    step_ids = list(data["engine"][0]["steps"]) if data["engine"] else []
    step_rows = "\n".join(
        f"| `{sid}` | {statistics.median(r['steps'].get(sid, 0.0) for r in data['engine']):.3f} |"
        for sid in step_ids)
    step_sum = statistics.median(sum(r["steps"].values()) for r in data["engine"])
    run_rows = "\n".join(f"| {i + 1} | {e['elapsed']:.2f} | {b['elapsed']:.2f} | {e['elapsed'] / b['elapsed']:.3f} |"
                         for i, (e, b) in enumerate(zip(data["engine"], data["bash"])))
    m = data["machine"]
    decomposition = decompose(data, m_bash)
    rows = ", ".join(f"`{t}` {n:,}" for t, n in data["rows"].items())
    text = f"""# Restore benchmark: `database-recovery.yaml` vs. a bash script

Written by `python bench/restore_bench.py{data['argv']}` on {data['date']}.
What it measures and how: the docstring of `bench/restore_bench.py`.

## Result

| | median of {len(eng)} runs |
|---|---|
| engine: `runbook run playbooks/database-recovery.yaml` | **{m_eng:.2f} s** |
| bash: `sha256sum -c`, `psql`, `curl`, `pg_restore`, `psql count(*)`, `curl` | **{m_bash:.2f} s** |
| engine / bash | **{ratio:.3f}** ({overhead * 100:+.1f} %, {m_eng - m_bash:+.2f} s) |
| median of the per-pair ratios (each engine run / the bash run next to it) | {pair_ratio:.3f} |
| target: the engine adds under {TARGET_OVERHEAD * 100:.0f} % | {verdict} |
| client-side CPU (user + sys of the process tree: pg_restore, sha256, python / bash, psql, curl) | engine {cpu_eng:.2f} s, bash {cpu_bash:.2f} s |

Data: {rows} rows; database {human(data['database_bytes'])}, dump (`pg_dump -Fc`) {human(data['dump_bytes'])}.
Set-up (untimed): generating the rows took {data['generate_seconds']:.0f} s, the dump {data['dump_seconds']:.0f} s.

{decomposition}

## Every run (seconds, whole process)

Interleaved in pairs after one untimed warm-up pair, the order alternating
(bash first in even pairs, engine first in odd ones); CHECKPOINT before every run.
Load average (1, 5, 15 min) before the runs {data['load'][:3]}, after {data['load'][3:]}.

| run | engine | bash | ratio |
|---|---|---|---|
{run_rows}

## Where the engine's time goes (median seconds per step, from its journal)

| step | s |
|---|---|
{step_rows}
| sum of steps | {step_sum:.3f} |
| the rest: interpreter start-up, imports, loading and validating the runbook and inventory, journal | {m_eng - step_sum:.3f} |

The restore step runs the same `pg_restore --clean --if-exists --exit-on-error` as
the script, but `postgres.restore` first checks the dump against its `.sha256`
again (the runbook's first step already did; re-checking right before the
restore closes the gap between the two) and lists the archive (`pg_restore -l`)
to report the table count. Those are the engine's main extra work next to the
interpreter's start-up.

## Machine

{m['cpus']} CPUs, {m['memory']} RAM, {m['platform']}, Python {m['python']}, {m['pg_restore']}.
The lab's servers keep their data in `/dev/shm` (a RAM disk) with `fsync = off`,
as `runbook lab` always does: the restore is CPU-bound here, so the engine's fixed
costs weigh relatively more than on a disk-bound production server.
"""
    RESULTS.write_text(text)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "results.json").write_text(json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="row counts x SCALE (default 1: 4 M rows)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument("--keep-lab", action="store_true", help="leave the lab running afterwards")
    parser.add_argument("--report-only", action="store_true",
                        help=f"rewrite {RESULTS.name} from the last run's {WORK.name}/results.json")
    args = parser.parse_args()
    if args.report_only:
        write_results(json.loads((WORK / "results.json").read_text()))
        print(RESULTS.read_text())
        return 0

    from engine.lab.sandbox import lab_down, lab_up

    rows = {table: max(1, int(n * args.scale)) for table, n in BASE_ROWS.items()}
    work = Path(tempfile.mkdtemp(prefix="runbook-restore-bench-"))
    log(f"starting a lab in {lab_dir()}")
    state = lab_up(lab_dir())
    try:
        quiet_lab(state)
        log(f"generating {sum(rows.values()):,} rows ({rows})")
        started = time.perf_counter()
        generate(state, rows)
        generate_seconds = time.perf_counter() - started
        size = database_bytes(state)
        backup = Path(state["backup_dir"]) / "bench.dump"
        log(f"database {human(size)}; dumping to {backup}")
        started = time.perf_counter()
        dump(state, backup)
        dump_seconds = time.perf_counter() - started
        log(f"dump {human(backup.stat().st_size)} in {dump_seconds:.0f} s")

        results: dict[str, list] = {"engine": [], "bash": []}
        contenders = (("engine", run_engine), ("bash", run_bash))
        load_before = os.getloadavg()
        for index in range(args.runs + 1):
            # engine first in odd pairs, bash first in even ones: a drift in the
            # machine's load over the runs then favours neither side
            for name, run in (contenders if index % 2 else contenders[::-1]):
                checkpoint(state)
                outcome = run(state, backup, rows["users"], work, index)
                if outcome["rc"] != 0:
                    log(f"{name} run failed (rc={outcome['rc']}):\n{outcome['tail']}")
                    return 1
                label = "warm-up" if index == 0 else f"run {index}"
                log(f"{name:6} {label}: {outcome['elapsed']:.2f} s")
                if index > 0:
                    results[name].append(outcome)

        argv = "".join(f" {a}" for a in sys.argv[1:])
        write_results({"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                       "argv": argv, "machine": machine(), "rows": rows,
                       "database_bytes": size, "dump_bytes": backup.stat().st_size,
                       "generate_seconds": generate_seconds, "dump_seconds": dump_seconds,
                       "load": [round(x, 2) for x in (*load_before, *os.getloadavg())],
                       **results})
        log(f"wrote {RESULTS}")
        print(RESULTS.read_text().split("## Every run")[0])
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep_lab:
            lab_down(lab_dir())


if __name__ == "__main__":
    sys.exit(main())
