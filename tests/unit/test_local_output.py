"""Local programs' output is read as it comes and capped while reading (issue 10, defect 9):
``yes | head -c 1G`` keeps the head and the tail, says how much it dropped, and the
engine's memory stays flat."""
from __future__ import annotations

import subprocess
import sys

from engine.actions.base import Context
from engine.connections.local import OUTPUT_LIMIT, CappedOutput, run_process
from helpers.run import REPO, cli_env, write_runbook


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


def test_capped_output_keeps_head_and_tail_and_counts_the_middle():
    out = CappedOutput(limit=10)
    for chunk in (b"0123", b"4567", b"89ab", b"cdef", b"ghij"):
        out.feed(chunk)
    assert out.dropped == 10
    assert out.text() == "01234\n[... 10 bytes of output dropped ...]\nfghij"
    small = CappedOutput(limit=10)
    small.feed(b"abc")
    assert (small.text(), small.dropped) == ("abc", 0)


def test_a_command_that_prints_more_than_the_cap_reports_what_was_dropped():
    done = run_process(["sh", "-c", f"head -c {3 * OUTPUT_LIMIT} /dev/zero | tr '\\0' x; echo END"],
                       Context())
    assert done.rc == 0
    assert done.stdout_dropped == 3 * OUTPUT_LIMIT + 4 - OUTPUT_LIMIT
    assert done.stdout.startswith("x" * 1000) and done.stdout.endswith("xxEND\n")
    assert f"[... {done.stdout_dropped} bytes of output dropped ...]" in done.stdout


def test_stdin_and_both_streams_still_work():
    done = run_process(["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"], Context(), stdin="hello")
    assert (done.rc, done.stdout, done.stderr) == (3, "HELLO", "oops\n")


def test_one_gigabyte_of_output_keeps_the_engine_flat(tmp_path):
    runbook = write_runbook(tmp_path, """
        name: big
        steps:
          - id: big
            shell: "yes | head -c 1G"
            register: big
          - assert:
              that:
                - big.dropped_bytes.stdout > 1000000000
                - big.stdout | length < 1100000
    """)
    done, peak_mb = peak_memory_mb([sys.executable, "-m", "engine", "run", str(runbook),
                                    "--state-dir", str(tmp_path / "state")],
                                   cwd=REPO, env=cli_env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert peak_mb < 150, f"the engine peaked at {peak_mb:.0f} MB for 1 GiB of output"
