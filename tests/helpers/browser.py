"""Headless Chromium for tests: dump the DOM a page builds, take a screenshot.

Debian's ``chromium``. Missing: the test is skipped on a workstation, and fails
under CI (env ``CI`` set), where it must be installed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--hide-scrollbars", "--mute-audio"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)
    return done


def dump_dom(url: str, timeout: float = 90, extra: tuple = ()) -> str:
    done = _run([*extra, "--dump-dom", url], timeout)
    assert done.stdout.strip(), f"chromium printed no DOM: {done.stderr[-2000:]}"
    return done.stdout


def screenshot(url: str, path: str, size: str = "1100,1500", timeout: float = 90) -> bytes:
    done = _run([f"--window-size={size}", f"--screenshot={path}", url], timeout)
    assert os.path.exists(path), f"chromium wrote no screenshot: {done.stderr[-2000:]}"
    with open(path, "rb") as handle:
        return handle.read()
