"""Options shared by several command modules."""
from __future__ import annotations

import click


def state_options(fn):
    """--state-dir and --state-url, shared by every command that reads or writes runs."""
    fn = click.option("--state-url", envvar="RUNBOOK_STATE_URL",
                      help="postgresql://... : keep runs in a shared PostgreSQL table.")(fn)
    return click.option("--state-dir", envvar="RUNBOOK_STATE_DIR", type=click.Path(),
                        help="Where runs are kept (default ./.runbook).")(fn)
