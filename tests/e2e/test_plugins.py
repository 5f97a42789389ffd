"""Third-party actions through the ``runbook.actions`` entry point, with no
change to the engine.

The plug-in package (tests/plugins/runbook_hello) is really built and installed
by pip, once per module, but with ``--target`` into a temporary directory that
only the CLI subprocesses see on PYTHONPATH: entry-point discovery is the real
``importlib.metadata`` path, and the test environment is left untouched. That
is faster than a venv (no interpreter copy, no pip bootstrap) and as honest.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest
from helpers.run import REPO, runbook_cli, write_runbook

PLUGIN = REPO / "tests" / "plugins" / "runbook_hello"


def _can_build_without_isolation() -> bool:
    """setuptools builds wheels by itself from 70.1; before that it needs ``wheel``."""
    try:
        from importlib.metadata import version

        major, minor = (int(p) for p in version("setuptools").split(".")[:2])
    except Exception:
        return False
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    """A directory holding the pip-installed plug-in (package + dist-info with entry points)."""
    base = tmp_path_factory.mktemp("plugin")
    source = base / "src"
    shutil.copytree(PLUGIN, source)  # builds write egg-info/build dirs: keep the repo clean
    target = base / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               "--disable-pip-version-check", "--target", str(target), str(source)]
    if _can_build_without_isolation():
        command.insert(4, "--no-build-isolation")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    entry_points = next(target.glob("runbook_hello-*.dist-info")) / "entry_points.txt"
    assert "hello.greet = runbook_hello:Greet" in entry_points.read_text()
    return target


def _with_plugin(plugin_path) -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(plugin_path), str(REPO)])}


GREETING = """
    name: Plug-in greeting
    steps:
      - name: Greet the on-call
        hello.greet: {who: "{{ oncall }}", punctuation: "!!"}
        register: hi
      - name: Check the greeting
        assert: {that: "hi.greeting == 'Hello, ' ~ oncall ~ '!!'"}
"""


def test_a_plugin_action_runs_in_a_runbook(tmp_path, plugin_path):
    write_runbook(tmp_path, GREETING)
    done = runbook_cli("run", "runbook.yaml", "-e", "oncall=dana", "--state-dir", "state",
                       cwd=tmp_path, env=_with_plugin(plugin_path))
    assert done.rc == 0, done.output
    assert "ok           Greet the on-call — Hello, dana!!" in done.stdout
    assert "Recap: COMPLETED — ok=2" in done.stdout


def test_without_the_plugin_installed_the_action_is_unknown(tmp_path):
    write_runbook(tmp_path, GREETING)
    done = runbook_cli("run", "runbook.yaml", "-e", "oncall=dana", "--state-dir", "state",
                       cwd=tmp_path)
    assert done.rc == 2
    assert "runbook.yaml:4:5: unknown action or keyword 'hello.greet'" in done.stderr


def test_plugin_arguments_are_validated_like_builtins(tmp_path, plugin_path):
    write_runbook(tmp_path, """
        name: Typo
        steps:
          - hello.greet: {whom: dana}
    """)
    done = runbook_cli("validate", "runbook.yaml", cwd=tmp_path, env=_with_plugin(plugin_path))
    assert done.rc == 2
    assert "hello.greet: unknown argument 'whom' (did you mean 'who'?)" in done.stderr


def test_actions_lists_the_plugin(tmp_path, plugin_path):
    done = runbook_cli("actions", cwd=tmp_path, env=_with_plugin(plugin_path))
    assert done.rc == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("hello.greet"))
    assert line.split(None, 2)[1:] == ["read-only", "Greet someone by name (a plug-in example)."]
    assert "command " in done.stdout  # built-ins are still listed


def test_actions_shows_the_plugin_arguments(tmp_path, plugin_path):
    done = runbook_cli("actions", "hello.greet", cwd=tmp_path, env=_with_plugin(plugin_path))
    assert done.rc == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "hello.greet (read-only)"
    who = next(line for line in lines if line.strip().startswith("who "))
    assert "Whom to greet." in who and "(required)" in who
    assert any(line.strip().startswith("punctuation ") for line in lines)


def test_a_plugins_sensitive_arguments_are_masked_in_every_event(tmp_path, plugin_path):
    write_runbook(tmp_path, """
        name: Login
        steps:
          - name: Log in
            hello.login: {user: dana, password: plain-hunter2-literal}
    """)
    for extra in ([], ["--dry-run"]):
        done = runbook_cli("run", "runbook.yaml", "--state-dir", "state", "--output", "json",
                           *extra, cwd=tmp_path, env=_with_plugin(plugin_path))
        assert done.rc == 0, done.output
        assert "plain-hunter2-literal" not in done.output
        shown = [e["data"]["args"] for e in done.events()
                 if e["type"] in ("step.started", "step.planned")]
        assert shown == [{"user": "dana", "password": "***"}]
    journals = "".join(p.read_text() for p in (tmp_path / "state").rglob("journal.jsonl"))
    assert "plain-hunter2-literal" not in journals and '"password":"***"' in journals
