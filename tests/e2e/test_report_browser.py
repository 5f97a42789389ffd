"""The HTML report of real runs, rendered by headless Chromium: the DOM it builds (a
timeline bar per step, the RTO line, approvals, rollback, the dry-run marker) and a
screenshot that is not blank.

``RUNBOOK_UPDATE_SCREENSHOT=1`` also copies the completed run's screenshot to
docs/report-screenshot.png (the README's picture: made by this test, never by hand).
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from helpers import browser
from helpers import reports as rp
from helpers.png import colour_count, read_png

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    browser.chromium()
    tmp = tmp_path_factory.mktemp("html")
    ids = {"completed": rp.completed_run(tmp), "failed": rp.failed_run(tmp),
           "crashed": rp.crashed_and_resumed_run(tmp), "dry": rp.dry_run(tmp)}
    paths = {}
    for which, run_id in ids.items():
        path = tmp / f"{which}.html"
        path.write_text(rp.report(tmp, run_id, "html"))
        paths[which] = path
    return tmp, paths


def dom(path: Path) -> str:
    return browser.dump_dom(path.as_uri())


def bars_by_step(page: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for kind, step in re.findall(r'<rect class="bar bar-([a-z]+)" data-step="([^"]+)"', page):
        found.setdefault(step, []).append(kind)
    return found


def test_completed_run_has_a_bar_per_step_the_rto_line_and_the_approval(pages):
    _, paths = pages
    page = dom(paths["completed"])
    bars = bars_by_step(page)
    assert list(bars) == ["check", "stop", "sign-off", "health", "cleanup", "announce"]
    assert bars["health"] == ["attempt", "changed"]          # the failed attempt, then success
    assert bars["cleanup"] == ["ignored"] and bars["announce"] == ["operator"]
    assert 'id="rto-line"' in page and "RTO 1m00s" in page
    assert 'class="band band-paused"' in page                # the wait for the approval
    assert re.search(r'<tr class="approval-granted">.*carol.*backup verified', page)
    assert "INC-4242" in page and "posted at 03:12" in page
    assert 'id="verification">hash chain verified' in page
    assert "https://" not in page


def test_failed_run_shows_the_rollback_in_its_own_colour(pages):
    _, paths = pages
    page = dom(paths["failed"])
    bars = bars_by_step(page)
    assert bars["promote"] == ["failed"] and bars["down-rollback-command"] == ["rollback"]
    assert 'id="rollback"' in page and "promotion refused" in page
    assert 'class="status s-failed"' in page and "not recovered (failed)" in page


def test_crashed_run_shows_the_interruption(pages):
    _, paths = pages
    page = dom(paths["crashed"])
    assert 'class="band band-interrupted"' in page
    assert "slow: rerun (idempotent)" in page
    assert list(bars_by_step(page)) == ["first", "slow", "last"]


def test_dry_run_is_marked_and_its_timeline_estimated(pages):
    _, paths = pages
    page = dom(paths["dry"])
    assert 'id="dry-run"' in page and "Timeline (estimated from the plan)" in page
    assert set(k for kinds in bars_by_step(page).values() for k in kinds) == {"planned"}
    assert 'id="estimate"' in page


@pytest.mark.parametrize("which", ["completed", "failed", "dry"])
def test_screenshot_is_not_blank(pages, which, tmp_path):
    _, paths = pages
    png = browser.screenshot(paths[which].as_uri(), str(tmp_path / f"{which}.png"))
    width, height, _ = read_png(png)
    assert (width, height) == (1100, 1500)
    assert colour_count(png) > 20, "the screenshot is (nearly) one colour"
    if which == "completed" and os.environ.get("RUNBOOK_UPDATE_SCREENSHOT"):
        shutil.copy(tmp_path / f"{which}.png", DOCS / "report-screenshot.png")


def test_report_page_has_no_external_resources(pages):
    _, paths = pages
    text = paths["completed"].read_text()
    assert not re.search(r'(src|href)="(https?:)?//', text)
    assert "<script" not in text and "@media print" in text
