"""Run-level notifications: the runbook's ``notifications:`` told about the run's events.

::

    notifications:
      - {events: [run.failed, run.completed], target: incidents, message: run-outcome,
         audience: internal}
      - {events: [approval.requested], target: oncall, args: {severity: warning}}

A :class:`Notifier` observes the journal. When an event a subscription names is
appended, it sends through the notify verb that matches the target's settings
(``via:`` picks one when the target has several) and journals the outcome as
``notification.sent`` or ``notification.failed`` right after the event (an
*afterword*: it never changes the run's status). Nothing here can fail or stop
the run: every error becomes a ``notification.failed`` event. A message that
cannot be rendered (a name the run never set) is replaced by a built-in summary
of the event, and the event says so.

In a dry-run nothing is sent: at the rehearsal's end every subscription is
rendered and checked for each of its events, and listed as
``notification.planned`` with the verb's plan line.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from engine import actions
from engine.actions.base import ActionError, Context
from engine.journal import events as ev
from engine.source.messages import Notification
from engine.source.messages_schema import CHANNELS

#: seconds one notification may take, retries included (the run waits for it)
BUDGET = 20.0


def attach_notifications(runbook, journal, scope: dict, run_ctx: Context, dry_run: bool) -> None:
    """Subscribe the runbook's notifications (if it has any) to ``journal``."""
    if runbook.notifications:
        journal.subscribe(Notifier(runbook, journal, scope, run_ctx, dry_run))


@dataclass(frozen=True)
class Outcome:
    kind: str          # one of the notification.* event types
    data: dict


class Notifier:
    def __init__(self, runbook, journal, scope: dict, run_ctx: Context, dry_run: bool) -> None:
        self.runbook = runbook
        self.journal = journal
        self.scope = scope            # the run's live variables (registered results appear here)
        self.run_ctx = run_ctx
        self.dry_run = dry_run

    def __call__(self, event) -> None:
        if event.type in ev.AFTERWORDS:
            return
        if self.dry_run:
            if event.type in ev.RUN_ENDS:
                self._rehearse(event)
            return
        if event.type == ev.STEP_FAILED and (event.data.get("ignored") or event.data.get("finding")):
            return
        for index, note in enumerate(self.runbook.notifications):
            if event.type in note.events:
                self._record(self._send(index, note, event.type, event))

    def _rehearse(self, end) -> None:
        for index, note in enumerate(self.runbook.notifications):
            for kind in note.events:
                self._record(self._send(index, note, kind, end, plan_only=True))

    def _record(self, outcome: Outcome) -> None:
        try:
            self.journal.append(outcome.kind, None, self.run_ctx.redactor.mask(outcome.data)
                                if self.run_ctx.redactor is not None else outcome.data)
        except Exception:  # a notification must never end the run, not even by its journaling
            pass

    # --- one notification ---
    def _send(self, index: int, note: Notification, kind: str, event, plan_only: bool = False
              ) -> Outcome:
        base = {"event": kind, "event_seq": event.seq, "target": note.target,
                "message": note.message, "audience": note.audience,
                "step": (event.step or {}).get("id")}
        try:
            target, verb = self._target(note)
            base["via"] = verb
            ctx = self._context(index, note, kind, event, target)
            args, fallback = self._args(note, verb, kind, ctx)
            action = actions.get_action(f"notify.{verb}")()
            if plan_only:
                return Outcome(ev.NOTIFICATION_PLANNED, {**base, "plan": action.plan(args, ctx),
                                                        "fallback": fallback})
            result = action.run(args, ctx)
        except ActionError as exc:
            kind_ = ev.NOTIFICATION_PLANNED if plan_only else ev.NOTIFICATION_FAILED
            return Outcome(kind_, {**base, "error": str(exc)})
        except Exception as exc:  # a bug in a sender must not end the run
            kind_ = ev.NOTIFICATION_PLANNED if plan_only else ev.NOTIFICATION_FAILED
            return Outcome(kind_, {**base, "error": f"{type(exc).__name__}: {exc}"})
        kind_ = ev.NOTIFICATION_SENT if result.ok else ev.NOTIFICATION_FAILED
        data = {**base, "result": result.message, "data": result.data, "fallback": fallback}
        if not result.ok:
            data["error"] = result.message
        return Outcome(kind_, data)

    def _target(self, note: Notification) -> tuple[dict, str]:
        targets = self.scope.get("targets") or {}
        target = targets.get(note.target)
        if target is None:
            raise ActionError(f"target '{note.target}' is not in the inventory")
        found = [c for c in CHANNELS if isinstance(target.get(c), dict)]
        if note.via:
            if note.via not in found:
                raise ActionError(f"target '{note.target}' has no '{note.via}:' settings")
            return target, note.via
        if len(found) != 1:
            raise ActionError(f"target '{note.target}' has " + (
                f"settings for {', '.join(found)}: say which with 'via:'" if found else
                f"no settings for any of {', '.join(CHANNELS)}"))
        return target, found[0]

    def _context(self, index: int, note: Notification, kind: str, event, target: dict
                 ) -> Context:
        """A context of its own: the run's may be in the middle of a step (approvals)."""
        ctx = Context(dry_run=self.dry_run, redactor=self.run_ctx.redactor,
                      state_dir=self.run_ctx.state_dir, run_id=self.run_ctx.run_id,
                      operator=self.run_ctx.operator)
        ctx.runbook, ctx.guide = self.runbook, self.run_ctx.guide
        step = (event.step or {}).get("id") if kind == event.type else None
        ref = {"id": f"notification-{index}-{kind}" + (f"-{step}" if step else ""),
               "name": f"notification {index + 1} ({kind})"}
        variables = dict(self.scope)
        variables["run"] = {**(self.scope.get("run") or {}), **_event_vars(kind, event)}
        ctx.bind_step(time.monotonic() + BUDGET, None, None, ref, target, variables)
        return ctx

    def _args(self, note: Notification, verb: str, kind: str, ctx: Context) -> tuple[dict, str]:
        """The verb's arguments; the second value names a message that could not be rendered."""
        from engine.actions.notify.common import render_message
        from engine.actions.arguments import check_rendered_args

        args, fallback = dict(note.args), ""
        if note.message:
            try:
                render_message(ctx, note.message, note.audience)
                args.update(message=note.message)
                if note.audience:
                    args["audience"] = note.audience
            except ActionError as exc:
                fallback = str(exc)
        if not note.message or fallback:  # the subscription's own args win over the summary
            args = {**_default_args(verb, ctx.variables["run"], self.runbook, fallback),
                    **note.args}
        problem = check_rendered_args(actions.get_action(f"notify.{verb}"), args)
        if problem:
            raise ActionError(problem)
        return args, fallback


def _event_vars(kind: str, event) -> dict:
    """What a notification's message may say about its event, under ``run.``."""
    data = event.data or {}
    step = event.step or {}
    status = kind.split(".", 1)[1] if kind.startswith("run.") else data.get("status")
    return {"event": kind, "status": status, "step": step.get("name") or step.get("id"),
            "failed_step": data.get("failed_step") or (step.get("id") if kind == ev.STEP_FAILED
                                                       else None),
            "event_message": data.get("message") or "", "approvers": data.get("approvers")}


_SUMMARIES = {
    "run.completed": "completed", "run.failed": "FAILED", "run.paused": "is paused",
    "run.aborted": "was aborted", "run.interrupted": "was interrupted",
    "approval.requested": "waits for an approval", "rollback.started": "is rolling back",
    "step.failed": "has a failed step",
}


def _default_args(verb: str, run: dict, runbook, fallback: str) -> dict:
    """A built-in summary of the event for each verb (no message, or one that failed)."""
    what = _SUMMARIES.get(run["event"], run["event"])
    subject = f"runbook '{runbook.name}' run {run.get('id')} {what}"
    details = [f"step: {run['step']}" if run.get("step") else "",
               str(run.get("event_message") or "").strip()]
    text = subject + "".join(f"\n{d}" for d in details if d)
    if fallback:
        text += f"\n(the message could not be rendered: {fallback})"
    if verb == "slack":
        return {"text": text}
    if verb == "pagerduty":
        return {"summary": subject, "custom_details": {"text": text}}
    if verb == "email":
        return {"subject": subject, "text": text}
    if verb == "statuspage":
        return {"name": subject, "body": text}
    return {"json": {"event": run["event"], "run_id": run.get("id"), "runbook": runbook.name,
                     "status": run.get("status"), "text": text}}
