"""``runbook lab up|down|status|reset|inbox``: the local rehearsal sandbox from the command line.

The commands only parse options, call :mod:`engine.lab.sandbox` and print; a failure
is a ``LabError`` (an ``EngineError``): one ``error: ...`` line and exit 1, shown by the
main command group like every other engine error.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

DEFAULT_LAB_DIR = ".runbook/lab"  # engine.lab.sandbox.DEFAULT_LAB_DIR; not imported so --help stays fast

__all__ = ["lab"]

dir_option = click.option(
    "--dir", "lab_dir", type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_LAB_DIR, show_default=True, help="Where the lab keeps its state and inventory.")


@click.group()
def lab() -> None:
    """A local sandbox of real services (PostgreSQL primary + replica, an HTTP app) for drills."""


@lab.command()
@dir_option
@click.option("--with", "with_parts", metavar="PARTS",
              help="Also start these parts (comma-separated): kubernetes, aws, inbox, ssh.")
@click.option("--all", "all_parts", is_flag=True, help="Start every part.")
def up(lab_dir: Path, with_parts: str | None, all_parts: bool) -> None:
    """Start the lab (a lab already in DIR is stopped and replaced) and write its inventory."""
    from engine.lab.parts import part_names
    from engine.lab.sandbox import lab_status, lab_up

    parts = part_names(with_parts, all_parts)
    desc = lab_up(lab_dir, parts, progress=lambda message: click.echo(f"  … {message}"))
    if desc.get("cleaned_stale"):
        click.echo("stopped the lab that was already there")
    click.echo(f"lab up in {desc['started_in']:.1f} s ({desc['dir']})")
    for server in (desc["primary"], desc["replica"]):
        click.echo(f"  {server['name']:<11} {server['role']:<8} {server['dsn']}  pid {server['pid']}")
    app = desc["app"]
    click.echo(f"  {'app':<11} {'http':<8} {app['url']}  pid {app['pid']}")
    base = {"primary_db", "replica_db", "app"}
    for name, service in lab_status(lab_dir)["services"].items():
        if name not in base:
            click.echo(f"  {name:<11} {_describe_service(service)}")
    click.echo(f"  data        {desc['runtime_dir']}")
    click.echo(f"  inventory   {desc['inventory']}")
    click.echo(f"fail the app:  curl '{app['admin_url']}?code=503'   (heal: ?code=200)")
    click.echo(f"run a drill:   runbook run PLAYBOOK -i {desc['inventory']}")


@lab.command()
@dir_option
def down(lab_dir: Path) -> None:
    """Stop every lab service and remove DIR and the lab's data."""
    from engine.lab.sandbox import lab_down

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
def status(lab_dir: Path, as_json: bool) -> None:
    """Show which lab services run, their PIDs, roles and health."""
    from engine.lab.sandbox import lab_status

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
        return f"stopped (port {service.get('port')})"
    if service.get("detail"):
        detail = service["detail"]
    elif "role" in service:
        detail = service["role"] or f"not answering: {service.get('error', '?')}"
    else:
        detail = f"health {service['health']}" if service["health"] else service.get("error", "?")
    return f"running  pid {service.get('pid') or '-':<7} port {service.get('port') or '-':<6} {detail}"


@lab.command()
@dir_option
def reset(lab_dir: Path) -> None:
    """Put the seed data back on the primary (after a destructive drill)."""
    from engine.lab.sandbox import lab_reset

    result = lab_reset(lab_dir)
    counts = ", ".join(f"{table} {n}" for table, n in result["seed"].items())
    click.echo(f"seed data restored in {result['dir']} ({counts} rows)")


@lab.command()
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print every record as JSON.")
def inbox(lab_dir: Path, as_json: bool) -> None:
    """What the lab's inbox received (lab up --with inbox): channel, recipient, subject, time."""
    from engine.lab.inbox import lab_records, received

    entries = received(lab_records(lab_dir))
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo("the inbox has received nothing yet")
        return
    for entry in entries:
        click.echo(_inbox_line(entry))
    click.echo(f"{len(entries)} received")


def _inbox_line(entry: dict) -> str:
    recipient = entry.get("recipient")
    if isinstance(recipient, list):
        recipient = ", ".join(recipient)
    subject = " ".join(str(entry.get("subject") or "").split())
    subject = subject if len(subject) <= 70 else subject[:69] + "…"
    answered = entry.get("answered")
    mark = "" if answered and 200 <= int(answered) < 300 else f"  [answered {answered}]"
    return (f"{str(entry.get('ts', ''))[11:19]}  {entry.get('channel', '?'):<10} "
            f"{str(recipient or '-')[:32]:<32} {subject}{mark}")
