"""What every notify verb shares: the target's settings, messages, previews and sending.

A verb is a :class:`NotifyAction`: ``prepare()`` reads the target's settings,
renders the message and checks the whole payload, returning a
:class:`Delivery`; ``plan()`` shows the delivery's one-line preview and sends
nothing; ``run()`` prepares the same delivery and hands it to ``deliver()``.
So a rehearsal checks exactly what a real run would send.

Secrets (webhook URLs, tokens, routing keys, passwords, API keys, signing
keys) are added to the run's redactor as soon as a step reads them, so the
executor masks them in every event even when the inventory holds them
literally; the verbs never put them in a message in the first place.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from engine.actions.base import Action, ActionError, Context, Result
from engine.errors import KnownOnlyAtRunTime

PREVIEW_CHARS = 60
#: arguments every verb accepts
COMMON_ARGS = {
    "message": {"type": "string", "description": "Name of a message in the runbook's "
                                                 "`messages` (instead of writing the text here)."},
    "audience": {"type": "string", "description": "Which audience's text of the message "
                                                  "(optional when it has only one)."},
    "timeout": {"type": ["number", "string"], "description": "Give up on one attempt after "
                                                             "this long (default 10s)."},
}


@dataclass(frozen=True)
class Rendered:
    """A message rendered for one audience."""

    text: str
    subject: str | None = None
    html: str | None = None


@dataclass
class Delivery:
    """Everything a verb needs to send, checked; ``preview`` is the plan line."""

    preview: str
    payload: Any = None
    details: dict = field(default_factory=dict)


class NotifyAction(Action):
    """Base of the notify verbs (not registered itself)."""

    mutates = True
    #: ``message``/``audience`` arguments name one of the runbook's messages (checked by validate)
    renders_messages: ClassVar[bool] = True
    #: the block of the target's settings this verb reads ("slack", "pagerduty", ...)
    channel: ClassVar[str] = ""
    #: keys of that block that hold secrets
    secret_settings: ClassVar[tuple[str, ...]] = ()

    def prepare(self, args: dict, ctx: Context) -> Delivery:  # pragma: no cover - abstract
        raise NotImplementedError

    def deliver(self, delivery: Delivery, ctx: Context) -> Result:  # pragma: no cover
        raise NotImplementedError

    def plan(self, args: dict, ctx: Context) -> str:
        return self.prepare(args, ctx).preview

    def run(self, args: dict, ctx: Context) -> Result:
        return self.deliver(self.prepare(args, ctx), ctx)

    # --- helpers for the verbs ---
    def settings(self, ctx: Context) -> dict:
        """The target's block for this channel; its secrets join the run's redactor."""
        target = ctx.target
        if not target:
            raise ActionError(f"{self.name} needs 'target:' naming an inventory target with "
                              f"a '{self.channel}:' block")
        block = target.get(self.channel)
        if not isinstance(block, dict):
            have = [k for k in CHANNELS if isinstance(target.get(k), dict)]
            raise ActionError(f"target '{target.get('name')}' has no '{self.channel}:' settings"
                              + (f" (it has: {', '.join(have)})" if have else ""))
        secrets = [str(block[k]) for k in self.secret_settings if block.get(k)]
        if ctx.redactor is not None and secrets:
            ctx.redactor.add(secrets)
        return block

    def where(self, ctx: Context) -> str:
        """How errors name the destination: the verb's channel and the target's name."""
        return f"{self.channel} target '{(ctx.target or {}).get('name', '?')}'"

    def rendered(self, args: dict, ctx: Context) -> Rendered | None:
        """The step's message for its audience, rendered; None when it names none."""
        if not args.get("message"):
            return None
        return render_message(ctx, args["message"], args.get("audience"))

    def timeout(self, args: dict, settings: dict) -> float:
        from engine.durations import parse_duration

        value = args.get("timeout", settings.get("timeout", 10))
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise ActionError(f"{self.name}: timeout: {exc}") from None


CHANNELS = ("slack", "pagerduty", "email", "statuspage", "webhook")


# --- messages ---

def render_message(ctx: Context, name: str, audience: str | None) -> Rendered:
    """Render message ``name`` for ``audience`` with the step's variables and the run clock."""
    from engine.templating import Templar, TemplateFailure
    from engine.unknowns import UnknownValue

    text = _message_text(ctx, name, audience)
    scope = dict(ctx.variables)
    scope["run"] = {**(scope.get("run") or {}), **run_clock(ctx)}
    templar = Templar()
    try:
        rendered = Rendered(text=str(templar.render(text.text, scope)),
                            subject=_optional(templar.render(text.subject, scope)),
                            html=_optional(templar.render(text.html, scope)))
    except UnknownValue as unknown:  # a dry-run: a value only the run will know
        raise KnownOnlyAtRunTime(f"message '{name}' needs {unknown.unknown.origin}, known "
                                 "only at run time") from None
    except TemplateFailure as exc:
        raise ActionError(f"message '{name}' ({audience or 'its audience'}): {exc}") from None
    unknown = unknown_in(rendered.text, rendered.subject, rendered.html)
    if unknown:
        raise KnownOnlyAtRunTime(f"message '{name}' needs {unknown}, known only at run time")
    return rendered


def unknown_in(*texts: str | None) -> str | None:
    """What a rendered text still waits for (a dry-run renders unknowns as placeholders)."""
    import re

    for text in texts:
        found = re.search(r"<(?:from step '[^']*': )?([^<>]*), unknown until run>", text or "")
        if found:
            return found.group(1)
    return None


def _message_text(ctx: Context, name: str, audience: str | None):
    messages = getattr(ctx.runbook, "messages", None) or {}
    message = messages.get(name)
    if message is None:
        known = ", ".join(sorted(messages)) or "the runbook defines none"
        raise ActionError(f"message '{name}' is not defined (messages: {known})")
    if audience is None:
        if len(message.audiences) != 1:
            raise ActionError(f"message '{name}' has several audiences "
                              f"({', '.join(message.audiences)}): say which with 'audience:'")
        return next(iter(message.audiences.values()))
    if audience not in message.audiences:
        raise ActionError(f"message '{name}' has no audience '{audience}' "
                          f"(it has: {', '.join(message.audiences)})")
    return message.audiences[audience]


def run_clock(ctx: Context) -> dict:
    """``run.elapsed`` (seconds), ``run.elapsed_text``, ``run.rto`` (seconds or None),
    ``run.rto_text``, ``run.rto_left_text`` and ``run.over_rto`` at this moment."""
    from engine.durations import format_duration

    started = getattr(ctx.guide, "run_started", None) or time.time()
    elapsed = max(0.0, time.time() - started)
    rto = getattr(ctx.runbook, "rto", None)
    clock = {"elapsed": round(elapsed, 1), "elapsed_text": format_duration(elapsed),
             "rto": rto, "rto_text": format_duration(rto) if rto else "none set",
             "rto_left_text": format_duration(max(0.0, rto - elapsed)) if rto else "n/a",
             "over_rto": bool(rto and elapsed > rto)}
    return clock


def _optional(value: Any) -> str | None:
    return None if value is None else str(value)


# --- small shared pieces ---

def preview(text: str | None, limit: int = PREVIEW_CHARS) -> str:
    """The first ``limit`` characters of ``text`` on one line, quoted."""
    flat = " ".join(str(text or "").split())
    return '"' + (flat if len(flat) <= limit else flat[:limit - 1] + "…") + '"'


def delivery_key(ctx: Context, prefix: str = "runbook") -> str:
    """Stable for one run, step, target and loop item: a resumed or retried step sends the
    same key (PagerDuty dedup_key, webhook Idempotency-Key, e-mail Message-ID)."""
    from engine.journal.replay import step_key

    key = f"{prefix}-{ctx.run_id}-{step_key(ctx.step_ref) or 'run'}"
    if len(key) > 255:
        key = f"{prefix}-" + hashlib.sha256(key.encode()).hexdigest()
    return key


def require(settings: dict, key: str, what: str) -> Any:
    value = settings.get(key)
    if value in (None, ""):
        raise ActionError(f"{what}: '{key}' is missing")
    return value


def http_error(exc) -> ActionError:
    """An ActionError from a connections.http failure (its text is already safe)."""
    return ActionError(str(exc))
