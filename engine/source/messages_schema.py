"""The JSON Schema of runbook-level ``messages:``, ``include_messages:`` and
``notifications:`` (``engine.source.messages`` reads them; ``engine.source.schema`` composes
them into the runbook schema)."""
from __future__ import annotations

NOTIFY_EVENTS = ("run.completed", "run.failed", "run.paused", "run.aborted", "run.interrupted",
                 "approval.requested", "rollback.started", "step.failed")
#: the notify verbs a notification can go through, by the target's settings block
CHANNELS = ("slack", "pagerduty", "email", "statuspage", "webhook")

_AUDIENCE = {
    "type": ["string", "object"], "additionalProperties": False, "required": ["text"],
    "description": "The text for one audience (a template), or {subject, text, html}.",
    "properties": {"subject": {"type": "string", "description": "Subject or title (a template)."},
                   "text": {"type": "string", "description": "Plain text body (a template)."},
                   "html": {"type": "string", "description": "Optional HTML body (e-mail)."}},
}
MESSAGES_SCHEMA = {
    "type": "object", "description": "Messages by name; each maps audience names to its text.",
    "additionalProperties": {"type": "object", "minProperties": 1,
                             "additionalProperties": _AUDIENCE},
}
INCLUDE_MESSAGES_SCHEMA = {
    "type": ["string", "array"], "items": {"type": "string", "minLength": 1}, "minLength": 1,
    "description": "File(s) holding `messages:` (paths relative to this file), merged with "
                   "the runbook's own `messages`; a name defined twice is an error.",
}
NOTIFICATIONS_SCHEMA = {
    "type": "array", "description": "Channels told about run events (sending never fails the run).",
    "items": {
        "type": "object", "additionalProperties": False, "required": ["events", "target"],
        "properties": {
            "events": {"type": ["array", "string"], "items": {"enum": list(NOTIFY_EVENTS)},
                       "description": "Run events that trigger it: " + ", ".join(NOTIFY_EVENTS)},
            "target": {"type": "string", "description": "Inventory target to notify."},
            "via": {"enum": list(CHANNELS),
                    "description": "Channel, when the target has settings for several."},
            "message": {"type": "string", "description": "Message name (default: a built-in "
                                                         "summary of the event)."},
            "audience": {"type": "string", "description": "Audience of the message."},
            "args": {"type": "object", "description": "More arguments for the notify verb "
                                                      "(e.g. severity, to)."},
        },
    },
}
MESSAGES_FILE_SCHEMA = {
    "type": "object", "required": ["messages"], "additionalProperties": False,
    "properties": {"messages": MESSAGES_SCHEMA},
}
