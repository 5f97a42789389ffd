"""Local programs' output is read as it comes and capped while reading (issue 10, defect 9):
``yes | head -c 1G`` keeps the head and the tail, says how much it dropped, and the
engine's memory stays flat."""
from __future__ import annotations

import resource
import subprocess
import sys

from engine.actions.base import Context
from engine.connections.local import OUTPUT_LIMIT, CappedOutput, run_process
from helpers.run import REPO, cli_env, write_runbook


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
    done = subprocess.run([sys.executable, "-m", "engine", "run", str(runbook), "--state-dir",
                           str(tmp_path / "state")], cwd=REPO, env=cli_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert peak_mb < 150, f"the engine peaked at {peak_mb:.0f} MB for 1 GiB of output"
