"""``runbook serve``: the read-only live view, loaded in headless Chromium while runs append
events to the journal."""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import browser
from helpers.run import runbook_cli, start_cli, write_runbook

TWO = """\
name: Two
rto: 1m
steps:
  - name: First
    command: [echo, one]
  - name: Slow
    id: slow
    command: [sh, -c, "while [ ! -f go ]; do sleep 0.1; done"]  # ends when the test says
  - name: Last
    command: [echo, three]
"""

GATED = """\
name: Gated
steps:
  - name: Sign-off
    id: sign-off
    approve: {approvers: [carol, dave], min_approvals: 1}
"""


@pytest.fixture
def server(tmp_path):
    proc = start_cli("serve", "--state-dir", "state", "--port", "0", cwd=tmp_path)
    line = proc.stderr.readline()
    match = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
    assert match, line
    yield match.group(1), tmp_path
    proc.terminate()
    proc.wait(10)


def wait_for_event(tmp: Path, run_id: str, needle: str, timeout: float = 30) -> None:
    journal = tmp / "state" / "runs" / run_id / "journal.jsonl"
    deadline = time.monotonic() + timeout
    while not (journal.exists() and needle in journal.read_text()):
        assert time.monotonic() < deadline, f"no {needle} in {journal}"
        time.sleep(0.05)


def test_page_shows_the_running_step_and_updates_itself_until_the_end(server):
    url, tmp = server
    write_runbook(tmp, TWO, "two.yaml")
    run = start_cli("run", "two.yaml", "--state-dir", "state", "--run-id", "live", cwd=tmp)
    try:
        wait_for_event(tmp, "live", '"slow"')
        time.sleep(0.3)
        page = browser.dump_dom(url + "run/live")
        assert re.search(r'class="status s-running">running', page)
        assert "running <b>Slow</b>" in page and 'id="rto-clock"' in page
        assert 'data-step="first"' in page and 'id="rto-line"' in page
        runs = browser.dump_dom(url)
        assert '<a href="/run/live">live</a>' in runs
        with browser.LivePage(url + "run/live") as live:
            live.wait_for("document.getElementById('status') !== null")
            assert live.evaluate("document.getElementById('status').textContent") == "running"
            live.wait_for("document.getElementById('conn').textContent == 'live'")
            (tmp / "go").touch()
            live.wait_for("document.getElementById('status').textContent == 'completed'")
            bars = live.evaluate("document.querySelectorAll('#timeline rect.bar').length")
            assert bars == 3
    finally:
        (tmp / "go").touch()  # never leave the run waiting
        assert run.wait(30) == 0


def test_page_says_who_the_run_waits_for(server):
    url, tmp = server
    write_runbook(tmp, GATED, "gated.yaml")
    assert runbook_cli("run", "gated.yaml", "--state-dir", "state", "--run-id", "gate",
                       cwd=tmp).rc == 3
    page = browser.dump_dom(url + "run/gate")
    assert 'class="status s-paused">paused' in page
    waiting = re.search(r'<ul id="waiting".*?</ul>', page, re.S).group(0)
    assert "approval of 'Sign-off': 0 of 1 from carol, dave" in waiting
    assert runbook_cli("approve", "gate", "sign-off", "--operator", "carol", "--state-dir",
                       "state", cwd=tmp).rc == 0
    page = browser.dump_dom(url + "run/gate")
    assert "(approved by carol)" in page


def test_the_view_is_read_only(server):
    url, tmp = server
    write_runbook(tmp, GATED, "gated.yaml")
    runbook_cli("run", "gated.yaml", "--state-dir", "state", "--run-id", "gate", cwd=tmp)
    for method in ("POST", "PUT", "DELETE"):
        request = urllib.request.Request(url + "run/gate", data=b"x", method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 405
    page = urllib.request.urlopen(url + "run/gate", timeout=10).read().decode()
    assert "<form" not in page and "<button" not in page
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(url + "run/nope", timeout=10)
    assert missing.value.code == 404


def test_events_stream_pushes_a_new_body_when_the_journal_grows(server):
    url, tmp = server
    write_runbook(tmp, TWO, "two.yaml")
    run = start_cli("run", "two.yaml", "--state-dir", "state", "--run-id", "sse", cwd=tmp)
    versions = []
    try:
        wait_for_event(tmp, "sse", '"slow"')
        stream = urllib.request.urlopen(url + "events/run/sse", timeout=30)
        for raw in stream:
            line = raw.decode()
            if line.startswith("data: "):
                versions.append(json.loads(line[6:])["version"])
                (tmp / "go").touch()
                if versions[-1].endswith(":completed"):
                    break
        stream.close()
    finally:
        (tmp / "go").touch()
        assert run.wait(30) == 0
    assert versions[0].endswith(":running") and len(versions) >= 2
