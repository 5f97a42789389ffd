"""``runbook report``, ``runbook history`` and ``runbook serve``: reading runs back as documents
and as a live page. Parsing and printing only; the work is in engine.reports."""
from __future__ import annotations

import click

from engine.cli.options import state_options

REPORT_FORMATS = ["md", "html", "json", "junit", "postmortem"]


@click.command()
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(REPORT_FORMATS), default="md",
              help="md (default), html (self-contained, printable), json (the source of the "
                   "others), junit (for CI drills) or postmortem (a draft of the post-mortem).")
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Write to this file.")
@state_options
def report(run_id, fmt, out, state_dir, state_url) -> None:
    """Write a run's report for the post-mortem, from its journal."""
    from engine.journal.store import open_store
    from engine.reports.run_report import render, report_for

    text = render(report_for(open_store(state_dir, state_url), run_id), fmt)
    _emit(text, out)


@click.command()
@click.argument("runbook")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text",
              help="text (default), json (one run per line) or html (with the trend).")
@click.option("-o", "--out", type=click.Path(dir_okay=False), help="Write to this file.")
@state_options
def history(runbook, fmt, out, state_dir, state_url) -> None:
    """List the real runs and drills of a runbook (file or name): achieved time vs RTO."""
    import json

    from engine.journal.store import open_store
    from engine.reports import history as hist
    from engine.reports.render import render_template

    name = hist.runbook_name(runbook)
    entries = hist.history(open_store(state_dir, state_url), name)
    if fmt == "json":
        text = "".join(json.dumps(e, default=str) + "\n" for e in entries)
    elif fmt == "html":
        text = render_template("history.html.j2", name=name, entries=entries,
                               chart=hist.trend_chart(entries), verdict=hist.verdict)
    else:
        text = hist.render_text(name, entries)
    _emit(text, out)


@click.command()
@state_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (the page is read-only, but runs name hosts and people).")
@click.option("--port", default=8765, show_default=True, type=int, help="0 picks a free port.")
def serve(state_dir, state_url, host, port) -> None:
    """Serve a read-only live view of the runs (for the incident channel) until Ctrl-C."""
    from engine.journal.store import open_store
    from engine.reports.serve import LiveServer

    server = LiveServer(open_store(state_dir, state_url), host, port)
    click.echo(f"serving runs of {server.store} on {server.url} (read-only; Ctrl-C stops)",
               err=True)
    server.serve_forever()


def _emit(text: str, out: str | None) -> None:
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text)
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)
