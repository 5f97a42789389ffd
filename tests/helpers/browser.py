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


class LivePage:
    """A page kept open in headless Chromium, read through the DevTools protocol while it
    updates itself (``runbook serve``'s server-sent events)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> "LivePage":
        import json
        import time
        import urllib.request

        import websocket  # websocket-client: installed with kubernetes, a core dependency
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-")
        self.proc = subprocess.Popen([chromium(), *FLAGS, f"--user-data-dir={self._profile.name}",
                                      "--remote-debugging-port=0", self.url],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self._profile.name, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.1)
        port = open(port_file).read().split()[0]
        while True:
            targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
            pages = [t for t in targets if t.get("type") == "page" and t["url"].startswith("http")]
            if pages:
                break
            assert time.monotonic() < deadline, f"no page in {targets}"
            time.sleep(0.1)
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=10)
        self._id = 0
        return self

    def evaluate(self, expression: str):
        import json

        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": "Runtime.evaluate",
                                 "params": {"expression": expression, "returnByValue": True}}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self._id:
                return reply["result"]["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30):
        import time

        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._profile.cleanup()
