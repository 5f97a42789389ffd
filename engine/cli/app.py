"""The ``runbook`` command line: parse options, call the engine, render, exit.

No engine logic lives here. Heavy modules are imported inside the commands
that need them so ``runbook --help`` stays fast.
"""
from __future__ import annotations

import os
import sys
import tempfile
import traceback
from datetime import datetime

import click

from engine.cli.options import state_options as _state_options
from engine.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EngineError

EXIT_CRASH = 70


class _Group(click.Group):
    """Turns engine errors into one clear message and their exit code; crashes into a short line."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EngineError as exc:
            click.echo(exc.render(), err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            _reader_went_away()
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception:
            path = _write_crash_report()
            click.echo(f"internal error: {sys.exc_info()[1]!r} — this is a bug in runbook-engine; "
                       f"the traceback is in {path}", err=True)
            ctx.exit(EXIT_CRASH)


def _reader_went_away() -> None:
    """``runbook runs | head``: the reader has what it wanted; a closed pipe is a normal end."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail
    except (OSError, ValueError):
        pass
    sys.exit(0)


def _write_crash_report() -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    fd, path = tempfile.mkstemp(prefix=f"runbook-crash-{stamp}-", suffix=".txt")
    with os.fdopen(fd, "w") as handle:
        traceback.print_exc(file=handle)
    return path


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="runbook-engine", prog_name="runbook")
def cli() -> None:
    """Declarative runbooks for disaster recovery and incident response.

    \b
    Exit codes: 0 success, 1 run failed, 2 invalid input, 3 paused,
    4 aborted by the operator, 5 run held by another process,
    130 interrupted, 70 internal error.
    """


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-i", "--inventory", "inventories", multiple=True, type=click.Path(),
              help="Inventory whose vars count as defined names (repeatable).")
@click.option("-e", "--extra-vars", "extra", multiple=True, help="Names given at run time count as defined.")
def validate(paths, inventories, extra) -> None:
    """Check runbooks: schema, actions, arguments, ids, durations, undefined names."""
    from engine.source.validate import validate_paths

    problems, checked = validate_paths(list(paths), list(inventories), list(extra))
    for problem in problems:
        click.echo(problem.render(), err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s) in {checked} file(s)", err=True)
        sys.exit(EXIT_INVALID)
    click.echo(f"ok: {checked} runbook(s) valid")


@cli.command()
@click.argument("runbook", type=click.Path())
@click.option("-i", "--inventory", "inventories", multiple=True, type=click.Path(),
              help="Inventory file (repeatable; later files win).")
@click.option("-e", "--extra-vars", "extra", multiple=True,
              help="NAME=VALUE, @vars.yaml or a JSON object (repeatable; highest precedence).")
@click.option("--dry-run", "--check", "dry_run", is_flag=True,
              help="Rehearse: run read-only steps, plan mutating ones, change nothing.")
@click.option("--strict", is_flag=True, help="With --dry-run: exit 1 if there are findings.")
@click.option("--tags", default="", help="Run only steps with these tags (comma-separated).")
@click.option("--skip-tags", default="", help="Skip steps with these tags (comma-separated).")
@click.option("--start-at", help="Skip every step before this step id.")
@click.option("--run-id", help="Id of the new run (default: generated).")
@_state_options
@click.option("--operator", help="Who runs this (default $RUNBOOK_OPERATOR or login name).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text",
              help="text (default) or json: one event per line on stdout.")
@click.option("--step", "step_mode", is_flag=True,
              help="Guided mode: show each step and wait for y/s/a/c/n/? before running it.")
@click.option("--answers", type=click.Path(), help="Scripted operator replies (YAML) for drills and CI.")
@click.option("--on-failure", type=click.Choice(["stop", "rollback"]),
              help="When the run fails: stop (default) or roll back the completed steps.")
@click.option("--limit", help="Only these inventory targets (comma-separated fnmatch patterns; "
              "'!name' excludes), as in Ansible.")
def run(runbook, inventories, extra, dry_run, strict, tags, skip_tags, start_at, run_id,
        state_dir, state_url, operator, output, step_mode, answers, on_failure, limit) -> None:
    """Run (or with --dry-run rehearse) a runbook."""
    from engine.run.options import RunOptions
    from engine.run.start import RunRequest, start_run

    options = RunOptions(dry_run=dry_run, strict=strict, tags=_csv(tags),
                         skip_tags=_csv(skip_tags), start_at=start_at, step_mode=step_mode,
                         on_failure=on_failure, limit=limit)
    request = RunRequest(runbook=runbook, inventories=list(inventories), extra=list(extra),
                         options=options, run_id=run_id, state_dir=state_dir, operator=operator,
                         answers=answers, state_url=state_url, exits_after=True)
    handle = start_run(request, [_reporter(output)])
    sys.exit(handle.outcome.exit_code)


def _csv(text: str) -> frozenset[str]:
    return frozenset(t.strip() for t in text.split(",") if t.strip())


def _reporter(output: str):
    if output == "json":
        from engine.reporters.jsonl import JsonLinesReporter

        return JsonLinesReporter()
    from engine.reporters.console import ConsoleReporter

    return ConsoleReporter()


@cli.command()
@click.argument("run_id")
@click.option("--in-doubt", type=click.Choice(["rerun", "skip"]),
              help="What to do with a mutating step that started but never finished.")
@click.option("--allow-changed", is_flag=True,
              help="Resume even if the runbook or inventory changed (recorded in the journal).")
@_state_options
@click.option("--operator", help="Who resumes (default $RUNBOOK_OPERATOR or login name).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
@click.option("--step", "step_mode", is_flag=True, help="Guided mode (see 'runbook run --step').")
@click.option("--answers", type=click.Path(), help="Scripted operator replies (YAML).")
@click.option("--on-failure", type=click.Choice(["stop", "rollback"]),
              help="When the run fails: stop or roll back the completed steps.")
@click.option("--limit", help="Only these inventory targets (comma-separated fnmatch patterns; "
              "'!name' excludes), as in Ansible.")
@click.option("-e", "--extra-vars", "secret_inputs", multiple=True, metavar="NAME=VALUE",
              help="A secret input given with -e at the start (never journaled); "
              "else $RUNBOOK_SECRET_<NAME>.")
def resume(run_id, in_doubt, allow_changed, state_dir, state_url, operator, output, step_mode,
           answers, on_failure, limit, secret_inputs) -> None:
    """Continue a failed, aborted, interrupted, paused or crashed run where it stopped."""
    from engine.run.resume import ResumeRequest, resume_run

    request = ResumeRequest(run_id=run_id, state_dir=state_dir, state_url=state_url,
                            operator=operator,
                            in_doubt=in_doubt, allow_changed=allow_changed, step_mode=step_mode,
                            answers=answers, on_failure=on_failure, limit=limit,
                            exits_after=True, secret_inputs=secret_inputs)
    ask = _ask_in_doubt if sys.stdin.isatty() and not in_doubt else None
    handle = resume_run(request, [_reporter(output)], ask)
    sys.exit(handle.outcome.exit_code)


def _ask_in_doubt(label: str, key: str) -> str:
    click.echo(f"Step '{label}' ({key}) started but never finished: it may or may not have run.")
    return click.prompt("Run it again or treat it as done?", type=click.Choice(["rerun", "skip"]))


@cli.command()
@_state_options
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
def runs(state_dir, state_url, output) -> None:
    """List runs with their state and age."""
    import json

    from engine.durations import format_duration
    from engine.journal.store import open_store

    found = open_store(state_dir, state_url).list_runs()
    if output == "json":
        for summary in found:
            click.echo(json.dumps(summary.as_dict()))
        return
    if not found:
        click.echo("no runs")
        return
    click.echo(f"{'RUN ID':<26} {'STATUS':<12} {'OPERATOR':<12} {'STARTED':<25} {'DURATION':>8}  RUNBOOK")
    for r in found:
        name = r.runbook + (" (dry-run)" if r.dry_run else "") + (f" [{r.drill}]" if r.drill else "")
        click.echo(f"{r.run_id:<26} {r.status:<12} {r.operator:<12} {r.started:<25} "
                   f"{format_duration(r.duration):>8}  {name}")


@cli.command()
@click.argument("playbooks", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--lab", "use_lab", is_flag=True, default=True,
              help="Drill against a fresh `runbook lab` (the default and, today, the only way).")
@click.option("--lab-dir", default=".runbook/drill-lab", show_default=True, type=click.Path(),
              help="Where the drill's lab lives (started fresh for each playbook).")
@click.option("--keep-lab", is_flag=True, help="Leave the last lab running afterwards.")
@_state_options
@click.option("--operator", help="Who drills (default $RUNBOOK_OPERATOR or login name).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
def drill(playbooks, use_lab, lab_dir, keep_lab, state_dir, state_url, operator, output) -> None:
    """Drill runbooks: rehearse and run each against a fresh lab, and compare the two."""
    from engine.cli.drill_output import show_results
    from engine.lab.sandbox import lab_down
    from engine.run.drill import DrillRequest, drill_playbooks

    request = DrillRequest(list(playbooks), lab_dir, state_dir, state_url, operator)
    try:
        results = drill_playbooks(request, progress=lambda m: click.echo(f"… {m}", err=True))
    finally:
        if not keep_lab:
            lab_down(lab_dir)
    show_results(results, output)
    sys.exit(0 if all(r.ok for r in results) else EXIT_FAILED)


@cli.command()
@click.argument("run_id")
@_state_options
def show(run_id, state_dir, state_url) -> None:
    """Show one run step by step: status, attempts, duration, checks, who confirmed."""
    from engine.durations import format_duration
    from engine.journal.views import step_views
    from engine.journal.store import open_store

    store = open_store(state_dir, state_url)
    events = store.events(run_id)
    summary = store.summary(run_id)
    click.echo(f"run {run_id}: {summary.runbook} — {summary.status}, started {summary.started} "
               f"by {summary.operator}")
    for view in step_views(events):
        who = f"  by {', '.join(view.operators)}" if view.operators else ""
        click.echo(f"  {view.status:<16} {view.name[:50]:<50} x{view.attempts} "
                   f"{format_duration(view.duration):>7}{who}")
        if view.message and view.status not in ("ok", "changed"):
            click.echo(f"  {'':<16} {view.message}")
        for check in view.verifications:
            click.echo(f"  {'':<16} verify {check}")


@cli.command()
@click.argument("run_id")
@click.argument("step")
@click.option("--operator", help="Who approves (default $RUNBOOK_OPERATOR or login name).")
@click.option("--comment", default="", help="Why, or what was checked.")
@_state_options
def approve(run_id, step, operator, comment, state_dir, state_url) -> None:
    """Approve a step that waits for approval (works while the run is paused)."""
    from engine.guide.approvals import record_approval

    message = record_approval(state_dir, run_id, step, operator, comment, state_url)
    click.echo(message)


@cli.command()
@click.argument("runbook", type=click.Path())
def docs(runbook) -> None:
    """Print a runbook as a markdown checklist (for a printed binder)."""
    from engine.source.compiler import load_runbook
    from engine.reports.checklist import runbook_markdown

    click.echo(runbook_markdown(load_runbook(runbook)), nl=False)


@cli.group()
def audit() -> None:
    """Check or export a run's tamper-evident journal."""


@audit.command(name="verify")
@click.argument("run_id")
@_state_options
def audit_verify(run_id, state_dir, state_url) -> None:
    """Recompute the hash chain; name the first bad seq."""
    from engine.journal.store import open_store

    result = open_store(state_dir, state_url).verify(run_id)
    if not result.ok:
        click.echo(f"TAMPERED: first bad event seq {result.first_bad_seq}: {result.problem}")
        sys.exit(EXIT_FAILED)
    click.echo(f"ok: {result.count} events, head {result.head}")
    if result.torn_line:
        click.echo(f"note: line {result.torn_line} is a torn partial write from a crash, not "
                   "tampering; 'runbook resume' repairs it")


@audit.command(name="export")
@click.argument("run_id")
@_state_options
def audit_export(run_id, state_dir, state_url) -> None:
    """Print the run's events as JSON lines (for a SIEM)."""
    import json
    from dataclasses import asdict

    from engine.journal.store import open_store

    for event in open_store(state_dir, state_url).events(run_id):
        click.echo(json.dumps(asdict(event), ensure_ascii=False))


@cli.command()
@click.option("--inventory", "inventory", is_flag=True,
              help="Print the inventory schema instead (schemas/inventory.schema.json).")
def schema(inventory) -> None:
    """Print the runbook JSON Schema, composed with every action's arguments."""
    import json

    from engine.source.schema import inventory_schema, runbook_schema

    document = inventory_schema() if inventory else runbook_schema()
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


@cli.command(name="actions")
@click.argument("name", required=False)
def actions_command(name) -> None:
    """List actions, or show one action's arguments."""
    from engine.actions import UnknownAction, action_names, get_action, suggest

    if name is None:
        for action_name in action_names():
            cls = get_action(action_name)
            kind = "mutating" if cls.mutates else "read-only"
            click.echo(f"{action_name:<22} {kind:<10} {cls.summary()}")
        return
    try:
        cls = get_action(name)
    except UnknownAction:
        hint = suggest(name)
        click.echo(f"unknown action '{name}'" + (f" (did you mean '{hint}'?)" if hint else ""), err=True)
        sys.exit(EXIT_INVALID)
    click.echo(_describe_action(cls))


def _describe_action(cls) -> str:
    import json

    lines = [f"{cls.name} ({'mutating' if cls.mutates else 'read-only'})", "", cls.summary(), ""]
    props = cls.args_schema.get("properties")
    if not props:
        for option in cls.args_schema.get("oneOf", []):
            props = props or option.get("properties")
    required = set(cls.args_schema.get("required", []))
    if props:
        lines.append("Arguments:")
        for key, spec in props.items():
            kind = spec.get("type") or ("one of " + json.dumps(spec["enum"]) if "enum" in spec else "any")
            mark = " (required)" if key in required else ""
            lines.append(f"  {key:<18} {str(kind):<22} {spec.get('description', '')}{mark}")
    else:
        lines.append("Arguments schema:")
        lines.append(json.dumps(cls.args_schema, indent=2))
    return "\n".join(lines)


def _add_commands() -> None:
    from engine.cli.lab import lab
    from engine.cli.reports import history, report, serve

    for command in (lab, report, history, serve):
        cli.add_command(command)


_add_commands()


def main() -> None:
    try:
        cli(prog_name="runbook")
    finally:
        _flush_quietly()


def _flush_quietly() -> None:
    """The interpreter's last flush of stdout must not turn a closed pipe into an error."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError):
        _reader_went_away()


if __name__ == "__main__":  # pragma: no cover
    main()
