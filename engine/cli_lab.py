"""``runbook lab up|down|status|reset``: the local rehearsal sandbox from the command line.

The commands only parse options, call :mod:`engine.lab` and print; a failure
prints one ``error: ...`` line and exits 1, never a traceback.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

DEFAULT_LAB_DIR = ".runbook/lab"  # engine.lab.DEFAULT_LAB_DIR; not imported so --help stays fast

__all__ = ["lab"]

dir_option = click.option(
    "--dir", "lab_dir", type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_LAB_DIR, show_default=True, help="Where the lab keeps its state and inventory.")


def _one_line_errors(command):
    """Turn any failure of ``command`` into ``error: ...`` on stderr and exit code 1."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:  # output piped into `head`: the reader has what it wanted
            sys.stderr.close()
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # the operator needs the reason, not our stack
            message = " ".join(str(exc).split()) or type(exc).__name__
            click.echo(f"error: {message}", err=True)
            sys.exit(1)
    return wrapper


@click.group()
def lab() -> None:
    """A local sandbox of real services (PostgreSQL primary + replica, an HTTP app) for drills."""


@lab.command()
@dir_option
@_one_line_errors
def up(lab_dir: Path) -> None:
    """Start the lab (a lab already in DIR is stopped and replaced) and write its inventory."""
    from engine.lab import lab_up

    desc = lab_up(lab_dir)
    if desc.get("cleaned_stale"):
        click.echo("stopped the lab that was already there")
    click.echo(f"lab up in {desc['started_in']:.1f} s ({desc['dir']})")
    for server in (desc["primary"], desc["replica"]):
        click.echo(f"  {server['name']:<11} {server['role']:<8} {server['dsn']}  pid {server['pid']}")
    app = desc["app"]
    click.echo(f"  {'app':<11} {'http':<8} {app['url']}  pid {app['pid']}")
    click.echo(f"  data        {desc['runtime_dir']}")
    click.echo(f"  inventory   {desc['inventory']}")
    click.echo(f"fail the app:  curl '{app['admin_url']}?code=503'   (heal: ?code=200)")
    click.echo(f"run a drill:   runbook run PLAYBOOK -i {desc['inventory']}")


@lab.command()
@dir_option
@_one_line_errors
def down(lab_dir: Path) -> None:
    """Stop every lab service and remove DIR and the lab's data."""
    from engine.lab import lab_down

    result = lab_down(lab_dir)
    if not result["stopped"] and not result["removed"]:
        click.echo(f"no lab in {result['dir']}; nothing to stop")
        return
    stopped = ", ".join(result["stopped"]) or "nothing was running"
    click.echo(f"stopped: {stopped}")
    for path in result["removed"]:
        click.echo(f"removed: {path}")


@lab.command()
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@_one_line_errors
def status(lab_dir: Path, as_json: bool) -> None:
    """Show which lab services run, their PIDs, roles and health."""
    from engine.lab import lab_status

    result = lab_status(lab_dir)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    if not result["exists"]:
        click.echo(f"no lab in {result['dir']} (start one with `runbook lab up --dir {lab_dir}`)")
        return
    click.echo(f"lab {result['dir']}  (inventory: {result['inventory']})")
    for name, service in result["services"].items():
        click.echo(f"  {name:<11} {_describe_service(service)}")


def _describe_service(service: dict) -> str:
    if not service["running"]:
        return f"stopped (port {service['port']})"
    if "role" in service:
        detail = service["role"] or f"not answering: {service.get('error', '?')}"
    else:
        detail = f"health {service['health']}" if service["health"] else service.get("error", "?")
    return f"running  pid {service['pid']:<7} port {service['port']:<6} {detail}"


@lab.command()
@dir_option
@_one_line_errors
def reset(lab_dir: Path) -> None:
    """Put the seed data back on the primary (after a destructive drill)."""
    from engine.lab import lab_reset

    result = lab_reset(lab_dir)
    counts = ", ".join(f"{table} {n}" for table, n in result["seed"].items())
    click.echo(f"seed data restored in {result['dir']} ({counts} rows)")
