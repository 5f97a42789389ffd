"""The lab: real PostgreSQL primary + replica and the HTTP app, up, status, down, stale cleanup."""
from __future__ import annotations

import os
import shutil
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from engine.actions.base import Context
from engine.actions.postgres.query import Ping, Query
from engine.actions.postgres.replication import Replication
from engine.cli.app import cli
from engine.cli.lab import lab
from engine.lab.sandbox import LabError, lab_down, lab_reset, lab_status, lab_up, runtime_dir_for


def http_get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or " Z " not in stat.read_text()


def lab_pids(description: dict) -> list[int]:
    return [description[k]["pid"] for k in ("primary", "replica", "app")]


def wait_gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --------------------------------------------------------------------------- up

def test_lab_up_runs_primary_replica_and_app(pg_lab):
    services = lab_status(pg_lab["dir"])["services"]
    assert services["primary_db"]["running"] and services["primary_db"]["role"] == "primary"
    assert services["replica_db"]["running"] and services["replica_db"]["role"] == "replica"
    assert services["app"]["running"] and services["app"]["health"] == 200
    assert all(alive(pid) for pid in lab_pids(pg_lab))


def test_lab_records_pids_and_paths_in_its_dir(pg_lab):
    lab_dir = Path(pg_lab["dir"])
    assert (lab_dir / "lab.json").is_file()
    assert Path(pg_lab["runtime_dir"]) == runtime_dir_for(lab_dir)
    assert (Path(pg_lab["primary"]["data_dir"]) / "postmaster.pid").read_text().split()[0] == \
        str(pg_lab["primary"]["pid"])


def test_inventory_points_at_the_running_services(pg_lab):
    inventory = yaml.safe_load(Path(pg_lab["inventory"]).read_text())
    databases = inventory["groups"]["databases"]["targets"]
    assert set(databases) == {"primary_db", "replica_db"}
    ctx = Context()
    try:
        assert Ping().run({"dsn": databases["primary_db"]["dsn"]}, ctx).data["in_recovery"] is False
        assert Ping().run({"dsn": databases["replica_db"]["dsn"]}, ctx).data["in_recovery"] is True
        replication = Replication().run({"dsn": databases["primary_db"]["dsn"]}, ctx).data
        assert [r["name"] for r in replication["replicas"]] == ["replica_db"]
    finally:
        ctx.close()
    app = inventory["targets"]["app"]
    assert http_get(app["health_url"]) == 200
    assert Path(inventory["vars"]["pg_bin_dir"], "pg_ctl").exists()
    assert Path(inventory["vars"]["backup_dir"]).is_dir()


def test_inventory_holds_no_password(pg_lab):
    text = Path(pg_lab["inventory"]).read_text()
    password = Path(pg_lab["passfile"]).read_text().strip().rsplit(":", 1)[1]
    assert password not in text
    assert oct(Path(pg_lab["passfile"]).stat().st_mode & 0o777) == "0o600"


def test_lab_database_is_seeded(pg_lab):
    ctx = Context()
    try:
        rows = Query().run({"dsn": pg_lab["primary"]["dsn"],
                            "sql": "SELECT (SELECT count(*) FROM users) AS users, "
                                   "(SELECT count(*) FROM orders) AS orders"}, ctx).data["rows"]
    finally:
        ctx.close()
    assert rows == [pg_lab["seed"]]


def test_lab_reset_puts_the_seed_data_back(pg_lab, superuser):
    superuser.execute(pg_lab["primary"], "DELETE FROM orders; DELETE FROM users WHERE id > 10")
    lab_reset(pg_lab["dir"])
    assert superuser.value(pg_lab["replica"], "SELECT count(*) FROM users") == 50
    assert superuser.value(pg_lab["primary"], "SELECT count(*) FROM orders") == 200


# --------------------------------------------------------------------------- app

@pytest.fixture
def app(pg_lab):
    """The lab app; its health is switched back to 200 after the test."""
    yield pg_lab["app"]
    urllib.request.urlopen(pg_lab["app"]["admin_url"] + "?code=200", timeout=5).close()


def test_app_health_can_be_failed_and_healed_over_http(app):
    assert http_get(app["admin_url"] + "?code=503") == 200
    assert http_get(app["health_url"]) == 503
    assert http_get(app["admin_url"] + "?code=200") == 200
    assert http_get(app["health_url"]) == 200


def test_app_health_can_be_switched_through_its_status_file(app):
    Path(app["status_file"]).write_text("500\n")
    assert http_get(app["health_url"]) == 500


def test_app_health_can_be_slowed_down(app):
    http_get(app["admin_url"] + "?code=200&delay=0.3")
    started = time.monotonic()
    assert http_get(app["health_url"]) == 200
    assert time.monotonic() - started >= 0.3


def test_app_rejects_a_bad_status_code(app):
    assert http_get(app["admin_url"] + "?code=42") == 400
    assert http_get(app["health_url"]) == 200


# --------------------------------------------------------------------------- down and stale labs

def test_lab_down_stops_everything_and_removes_its_files(spare_lab):
    description = spare_lab("down")
    result = lab_down(description["dir"])
    assert sorted(result["stopped"]) == ["app", "primary_db", "replica_db"]
    assert wait_gone(lab_pids(description))
    assert not Path(description["dir"]).exists()
    assert not Path(description["runtime_dir"]).exists()
    assert lab_status(description["dir"]) == {"dir": description["dir"], "exists": False, "services": {}}
    assert lab_down(description["dir"])["stopped"] == []  # a second down is harmless


def test_lab_up_cleans_up_labs_left_running_by_killed_runs(spare_lab):
    first = spare_lab("stale")
    second = spare_lab("stale")  # same dir: as if the run that started `first` had been killed
    assert second["cleaned_stale"] is True
    assert wait_gone(lab_pids(first))
    assert all(alive(pid) for pid in lab_pids(second))

    shutil.rmtree(second["dir"])  # lab.json gone too; the servers still run in the runtime dir
    third = spare_lab("stale")
    assert third["cleaned_stale"] is True
    assert wait_gone(lab_pids(second))
    assert lab_status(third["dir"])["services"]["replica_db"]["role"] == "replica"


def test_lab_status_notices_a_crashed_server(spare_lab):
    description = spare_lab("crash")
    os.kill(description["replica"]["pid"], signal.SIGKILL)
    assert wait_gone([description["replica"]["pid"]])
    services = lab_status(description["dir"])["services"]
    assert services["replica_db"]["running"] is False
    assert services["primary_db"]["running"] is True


def test_lab_refuses_a_dir_that_is_not_a_lab(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(LabError, match="not a lab dir"):
        lab_up(tmp_path)
    with pytest.raises(LabError, match="not a lab dir"):
        lab_down(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


# --------------------------------------------------------------------------- command line

def test_cli_lab_up_status_down(tmp_path):
    lab_dir = tmp_path / "cli-lab"
    runner = CliRunner()
    try:
        up = runner.invoke(lab, ["up", "--dir", str(lab_dir)])
        assert up.exit_code == 0, up.output
        assert "primary_db" in up.output and "replica_db" in up.output and "inventory" in up.output

        status = runner.invoke(lab, ["status", "--dir", str(lab_dir)])
        assert status.exit_code == 0
        assert "primary_db  running" in status.output and "health 200" in status.output

        down = runner.invoke(lab, ["down", "--dir", str(lab_dir)])
        assert down.exit_code == 0 and "stopped: replica_db, primary_db, app" in down.output
    finally:
        lab_down(lab_dir)
    assert "no lab in" in runner.invoke(lab, ["status", "--dir", str(lab_dir)]).output


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["lab", "up", "--dir", str(tmp_path)])  # as `runbook lab up`
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert "Traceback" not in result.output
