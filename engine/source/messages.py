"""A runbook's communication plan: ``messages`` per audience and run-level ``notifications``.

::

    include_messages: comms/messages.yaml       # optional: a file (or list) holding `messages:`
    messages:
      outage-initial:                           # a message, sent at one phase...
        internal: "INCIDENT: {{ incident_type }} affecting {{ systems }}"   # text only
        customers:                              # ...to one audience
          subject: "Service disruption"
          text: "We're experiencing technical difficulties. Updates to follow."
          html: "<p>We're experiencing technical difficulties.</p>"
    notifications:
      - {events: [run.failed, run.completed], target: incidents, message: run-outcome, audience: internal}

The texts are Jinja templates over the run's variables (``run.elapsed_text``,
``run.rto_text`` and the like are added when a message is sent). This module
reads and checks them: every message and audience a step or a notification
names literally exists, a message file is well formed; the compiler checks the
templates' names like any other template. Sending is the notify actions' job
(``engine.actions.notify``) and the run's (``engine.run.notifications``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from engine.errors import Pos, SourceError
from engine.source.loader import Document, load_file

#: run events a notification may subscribe to
from engine.source.messages_schema import MESSAGES_FILE_SCHEMA


@dataclass(frozen=True)
class AudienceText:
    text: str
    subject: str | None = None
    html: str | None = None


@dataclass(frozen=True)
class Message:
    name: str
    audiences: dict[str, AudienceText]
    pos: Pos | None = None


@dataclass(frozen=True)
class Notification:
    events: tuple[str, ...]
    target: str
    via: str | None = None
    message: str | None = None
    audience: str | None = None
    args: dict = field(default_factory=dict)
    pos: Pos | None = None


@dataclass
class Comms:
    messages: dict[str, Message] = field(default_factory=dict)
    notifications: tuple[Notification, ...] = ()
    files: list[Document] = field(default_factory=list)
    errors: list[SourceError] = field(default_factory=list)


def read_comms(doc: Document, step_files: list[Document], renders_messages) -> Comms:
    """The runbook's messages (its own and included) and notifications, with every problem.

    ``step_files``: included step files, whose steps may name messages too;
    ``renders_messages(action)``: whether an action's ``message``/``audience``
    arguments name a message.
    """
    comms = Comms()
    data = doc.data if isinstance(doc.data, dict) else {}
    _add_messages(comms, doc, data.get("messages"), ("messages",))
    for path, where in _include_paths(data.get("include_messages")):
        _include(comms, doc, path, ("include_messages",) + where)
    comms.notifications = tuple(_notifications(doc, data.get("notifications")))
    for source, steps, base in [(doc, data.get("steps"), ("steps",))] + [
            (f, f.data, ()) for f in step_files]:
        for path, args in _message_steps(steps, base, renders_messages):
            comms.errors += _check_reference(source, path, args, comms.messages)
    for index, note in enumerate(comms.notifications):
        comms.errors += _check_reference(doc, ("notifications", index), vars(note),
                                         comms.messages)
    return comms


# --- messages ---

def _add_messages(comms: Comms, doc: Document, raw: Any, path: tuple) -> None:
    if not isinstance(raw, dict):
        return  # absent, or the schema reported it
    for name, audiences in raw.items():
        if not isinstance(audiences, dict):
            continue
        if name in comms.messages:
            first = comms.messages[name].pos
            comms.errors.append(doc.error(path + (name,), f"message '{name}' is defined twice "
                                          f"(first at {first})", key=True))
            continue
        texts = {str(a): _audience(v) for a, v in audiences.items() if _audience(v)}
        comms.messages[str(name)] = Message(str(name), texts, doc.pos(path + (name,), key=True))


def _audience(value: Any) -> AudienceText | None:
    if isinstance(value, str):
        return AudienceText(text=value)
    if isinstance(value, dict) and isinstance(value.get("text"), str):
        return AudienceText(text=value["text"], subject=_str(value.get("subject")),
                            html=_str(value.get("html")))
    return None


def _include_paths(raw: Any) -> Iterator[tuple[str, tuple]]:
    if isinstance(raw, str):
        yield raw, ()
    elif isinstance(raw, list):
        for index, item in enumerate(raw):
            if isinstance(item, str):
                yield item, (index,)


def _include(comms: Comms, doc: Document, relative: str, path: tuple) -> None:
    from engine.source.schema import document_errors

    resolved = (Path(doc.path).parent / relative).resolve()
    try:
        included = load_file(resolved)
    except SourceError as exc:
        comms.errors.append(doc.error(path, f"cannot include messages from {resolved}: "
                                            f"{exc.message}") if "cannot read" in exc.message
                            else exc)
        return
    problems = document_errors(included, MESSAGES_FILE_SCHEMA)
    comms.errors += problems
    comms.files.append(included)
    if isinstance(included.data, dict):
        _add_messages(comms, included, included.data.get("messages"), ("messages",))


# --- notifications ---

def _notifications(doc: Document, raw: Any) -> Iterator[Notification]:
    if not isinstance(raw, list):
        return
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("target"), str):
            continue
        events = item.get("events")
        events = (events,) if isinstance(events, str) else tuple(
            e for e in events or () if isinstance(e, str))
        yield Notification(events=events, target=item["target"], via=_str(item.get("via")),
                           message=_str(item.get("message")), audience=_str(item.get("audience")),
                           args=item.get("args") if isinstance(item.get("args"), dict) else {},
                           pos=doc.pos(("notifications", index)))


# --- references ---

_GROUPS = ("block", "rescue", "always", "parallel", "rollback")


def _message_steps(steps: Any, path: tuple, renders_messages) -> Iterator[tuple[tuple, dict]]:
    """(path of the action's arguments, arguments) of every step that names a message."""
    if not isinstance(steps, list):
        return
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        here = path + (index,)
        for key, value in step.items():
            if key in _GROUPS:
                yield from _message_steps(value, here + (key,), renders_messages)
            elif isinstance(value, dict) and "message" in value and renders_messages(str(key)):
                yield here + (key,), value


def _check_reference(doc: Document, path: tuple, args: dict, messages: dict[str, Message]
                     ) -> list[SourceError]:
    """A literal message name must exist, and so must a literal audience of it."""
    name, audience = args.get("message"), args.get("audience")
    if not isinstance(name, str) or _templated(name):
        return []
    from engine.source.schema import did_you_mean

    if name not in messages:
        known = ", ".join(sorted(messages)) or "none defined"
        return [doc.error(path + ("message",), f"message '{name}' is not defined "
                          f"(messages: {known}){did_you_mean(name, messages)}")]
    audiences = messages[name].audiences
    if audience is None:
        if len(audiences) == 1:
            return []
        return [doc.error(path, f"message '{name}' has several audiences "
                          f"({', '.join(audiences)}): say which with 'audience:'")]
    if isinstance(audience, str) and not _templated(audience) and audience not in audiences:
        return [doc.error(path + ("audience",), f"message '{name}' has no audience '{audience}' "
                          f"(it has: {', '.join(audiences)}){did_you_mean(audience, audiences)}")]
    return []


def _templated(text: str) -> bool:
    return "{{" in text or "{%" in text


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
