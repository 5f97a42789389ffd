"""A held run: what ``start_run`` and ``resume_run`` share — the signal guard, the run's lock
and journal, the observers — and ``execute_run``, which runs the executor on it."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from engine.actions.base import Context
from engine.guide.operator import Guide, Terminal
from engine.journal.replay import ReplayState
from engine.run.executor import Executor
from engine.run.notifications import attach_notifications
from engine.run.options import RunOptions
from engine.run.outcome import RunOutcome
from engine.run.prepare import Prepared, build_scope
from engine.run.rehearsal import policy_for
from engine.run.runtime import Emitter, Runtime
from engine.run.signals import InterruptGuard
from engine.timestamps import epoch


@dataclass
class HeldRun:
    journal: object
    lock: object
    guard: InterruptGuard


@contextmanager
def held_run(open_journal: Callable[[], tuple], observers=(), *,
             exits_after: bool = False, redactor=None) -> Iterator[HeldRun]:
    """Hold a run from its lock to its release.

    ``open_journal()`` creates or opens the run (a held run raises ``RunHeld``: exit 5,
    nothing written). From then on Ctrl-C is held and delivered inside the executor,
    where it is journaled. ``exits_after``: the caller exits right after (the CLI), so
    signals stay ignored at the end.
    """
    guard = InterruptGuard().install()
    guard.hold()
    try:
        journal, lock = open_journal()
    except BaseException:
        guard.uninstall()
        raise
    journal.guard = guard  # an event is never split by a signal
    try:
        for observer in observers:
            journal.subscribe(observer, on_error=_observer_failed(redactor))
        yield HeldRun(journal, lock, guard)
    finally:
        journal.guard = None
        guard.finish(keep_handlers=exits_after)
        journal.close()
        lock.release()


def _observer_failed(redactor) -> Callable[[object, BaseException], None]:
    """An observer (a reporter) that raises is stopped and reported once; the run goes on."""
    def report(observer, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if redactor is not None:
            message = redactor.mask(message)
        name = getattr(observer, "__qualname__", type(observer).__name__)
        try:
            print(f"warning: the {name} observer failed and was stopped ({message}); "
                  "the run goes on and its journal has every event", file=sys.stderr)
        except (OSError, ValueError):
            pass  # stderr itself is gone: the journal still has everything
    return report


def execute_run(prepared: Prepared, held: HeldRun, options: RunOptions,
                replay: ReplayState, history: dict | None = None) -> RunOutcome:
    """Run the executor on a held run (new or resumed) and return how it ended.
    ``history``: step durations of earlier real runs, for a rehearsal's estimate."""
    journal, runbook = held.journal, prepared.runbook
    run_info = {"id": journal.run_id, "operator": journal.operator, "dry_run": options.dry_run,
                "runbook": runbook.name, "host": journal.host}
    scope = build_scope(runbook, prepared.inventory, prepared.inputs, prepared.extra,
                        prepared.secrets, run_info)
    emit = Emitter(journal, prepared.redactor)
    policy = policy_for(options, history)
    guide = make_guide(journal, options, policy, prepared.answers, runbook.rto, emit)
    ctx = Context(dry_run=options.dry_run, redactor=prepared.redactor, guide=guide,
                  runbook=runbook, state_dir=journal.directory, run_id=journal.run_id,
                  operator=journal.operator)
    attach_notifications(runbook, journal, scope, ctx, options.dry_run)  # the runbook's own
    runtime = Runtime(runbook, emit, ctx, scope, prepared.extra, options, policy, replay, guide,
                      held.guard)
    return Executor(runtime).run()


def make_guide(journal, options: RunOptions, policy, answers: dict | None, rto, emit) -> Guide:
    """The operator side: a terminal when stdin is one, scripted answers when given."""
    terminal = Terminal() if sys.stdin.isatty() and policy.asks_operator() else None
    guide = Guide(journal.events, emit=emit, step_mode=options.step_mode, answers=answers,
                  terminal=terminal, rto=rto)
    if journal.events:
        guide.run_started = epoch(journal.events[0].ts)
    return guide
