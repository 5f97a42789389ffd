"""``notify.pagerduty``: PagerDuty Events API v2 — trigger, acknowledge, resolve.

Target settings ``pagerduty: {routing_key, events_url}``; the routing key (an
integration key) is a secret. ``dedup_key`` defaults to one that is stable for
the run, the step, the target and the loop item, so a retried or resumed step
re-sends the same event and PagerDuty folds it into the incident it already
opened: this verb is therefore ``idempotent`` (an in-doubt step is re-run on
resume without asking).
"""
from __future__ import annotations

import json
import re

from engine.actions.base import ActionError, Context, Result
from engine.actions.notify.common import (COMMON_ARGS, Delivery, NotifyAction, delivery_key,
                                          http_error, preview, require)

DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = ("critical", "error", "warning", "info")
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
MAX_EVENT_BYTES = 512 * 1024
_ROUTING_KEY = re.compile(r"^[A-Za-z0-9]{32}$")


class PagerDuty(NotifyAction):
    """Trigger, acknowledge or resolve a PagerDuty alert (Events API v2, deduplicated)."""

    name = "notify.pagerduty"
    channel = "pagerduty"
    secret_settings = ("routing_key",)
    idempotent = True
    args_schema = {
        "type": "object", "additionalProperties": False,
        "not": {"required": ["summary", "message"]},
        "properties": {
            "action": {"enum": ["trigger", "acknowledge", "resolve"],
                       "description": "Event action (default trigger)."},
            "summary": {"type": "string", "description": "What is wrong (trigger; at most "
                                                         "1024 characters are sent)."},
            "severity": {"enum": list(SEVERITIES), "description": "Default critical."},
            "source": {"type": "string", "description": "Affected system (default: the "
                                                        "target's source, else the runbook)."},
            "component": {"type": "string"}, "group": {"type": "string"},
            "class": {"type": "string"},
            "custom_details": {"type": "object", "description": "Free-form details."},
            "links": {"type": "array", "items": {
                "type": "object", "required": ["href"], "additionalProperties": False,
                "properties": {"href": {"type": "string"}, "text": {"type": "string"}}}},
            "dedup_key": {"type": "string", "maxLength": MAX_DEDUP_KEY,
                          "description": "Default: stable per run, step, target and item. "
                                         "acknowledge/resolve need the trigger's."},
            **COMMON_ARGS,
        },
        "if": {"required": ["action"], "properties": {"action": {"enum": ["acknowledge",
                                                                          "resolve"]}}},
        "then": {"required": ["dedup_key"]},
    }

    def prepare(self, args: dict, ctx: Context) -> Delivery:
        settings = self.settings(ctx)
        routing_key = str(require(settings, "routing_key", self.where(ctx)))
        if not _ROUTING_KEY.match(routing_key):
            raise ActionError(f"{self.where(ctx)}: routing_key must be the 32 letters and digits "
                              "of an Events API v2 integration key")
        action = args.get("action", "trigger")
        key = args.get("dedup_key") or delivery_key(ctx)
        event = {"routing_key": routing_key, "event_action": action, "dedup_key": key}
        line = f"pagerduty {action}"
        if action == "trigger":
            event.update(self._trigger(args, ctx, settings))
            payload = event["payload"]
            line += f" {payload['severity']}: {preview(payload['summary'])}"
        size = len(json.dumps(event).encode())
        if size > MAX_EVENT_BYTES:
            raise ActionError(f"notify.pagerduty: the event is {size} bytes; PagerDuty accepts "
                              f"at most {MAX_EVENT_BYTES}")
        return Delivery(f"{line} dedup_key={key}", event,
                        {"settings": settings, "timeout": self.timeout(args, settings)})

    def _trigger(self, args: dict, ctx: Context, settings: dict) -> dict:
        rendered = self.rendered(args, ctx)
        details = dict(args.get("custom_details") or {})
        summary = args.get("summary")
        if rendered is not None:
            summary = rendered.subject or rendered.text
            details.setdefault("text", rendered.text)
        if not summary or not str(summary).strip():
            raise ActionError("notify.pagerduty: a trigger needs a summary (or a message)")
        summary = " ".join(str(summary).split())
        if len(summary) > MAX_SUMMARY:
            details.setdefault("full_summary", summary)
            summary = summary[:MAX_SUMMARY - 1] + "…"
        payload = {"summary": summary, "severity": args.get("severity", "critical"),
                   "source": args.get("source") or settings.get("source")
                   or f"runbook {getattr(ctx.runbook, 'name', '') or ctx.run_id}"}
        for key in ("component", "group", "class"):
            if args.get(key):
                payload[key] = args[key]
        if details:
            payload["custom_details"] = details
        event = {"payload": payload, "client": "runbook-engine"}
        if args.get("links"):
            event["links"] = args["links"]
        return event

    def deliver(self, delivery: Delivery, ctx: Context) -> Result:
        from engine.connections.http import HttpFailure, Request, send

        settings = delivery.details["settings"]
        url = settings.get("events_url") or DEFAULT_EVENTS_URL
        request = Request("POST", url, f"pagerduty events API ({self.where(ctx)})",
                          delivery.payload, {}, delivery.details["timeout"],
                          settings.get("ca_file"), [settings["routing_key"]], idempotent=True,
                          deadline=ctx.deadline)
        try:
            answer = send(request)
        except HttpFailure as exc:
            raise http_error(exc) from None
        body = answer.json() if isinstance(answer.json(), dict) else {}
        event = delivery.payload
        key = body.get("dedup_key") or event["dedup_key"]
        data = {"dedup_key": key, "action": event["event_action"],
                "status": body.get("status", "success"), "tries": answer.attempts}
        if "payload" in event:
            data["severity"] = event["payload"]["severity"]
        return Result(ok=True, changed=True, data=data,
                      message=f"pagerduty {event['event_action']} accepted (dedup_key {key})")
