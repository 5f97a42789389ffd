"""``notify.slack``: a message to a Slack channel, through an incoming webhook or the Web API.

Target settings ``slack: {webhook}`` post to an incoming webhook (the channel is
the webhook's own; ``channel`` there is only a label for plans). ``slack:
{token, channel, api_base}`` posts with ``chat.postMessage``, which returns the
message's ``ts``, so a later step can reply in its thread (``thread: "{{ first
}}"``). Both the webhook URL and the token are secrets.
"""
from __future__ import annotations

from engine.actions.base import ActionError, Context, Result
from engine.actions.notify.common import (COMMON_ARGS, Delivery, NotifyAction, http_error,
                                          preview)

MAX_TEXT = 40_000   # Slack truncates longer messages
MAX_BLOCKS = 50     # Slack refuses more blocks in one message
DEFAULT_API = "https://slack.com/api"


class Slack(NotifyAction):
    """Post a message to Slack (incoming webhook, or chat.postMessage with a token)."""

    name = "notify.slack"
    channel = "slack"
    secret_settings = ("webhook", "token")
    args_schema = {
        "type": "object", "additionalProperties": False,
        "anyOf": [{"required": ["text"]}, {"required": ["blocks"]}, {"required": ["message"]}],
        "not": {"required": ["text", "message"]},
        "properties": {
            "text": {"type": "string", "description": "The message (Slack mrkdwn)."},
            "blocks": {"type": "array", "items": {"type": "object", "required": ["type"]},
                       "description": "Block Kit blocks (text is then the notification fallback)."},
            "channel": {"type": "string", "description": "Channel for chat.postMessage "
                                                        "(default: the target's)."},
            "thread": {"type": ["string", "object"],
                       "description": "Reply in this thread: an earlier slack step's registered "
                                      "result, or its ts (needs a token)."},
            **COMMON_ARGS,
        },
    }

    def prepare(self, args: dict, ctx: Context) -> Delivery:
        settings = self.settings(ctx)
        rendered = self.rendered(args, ctx)
        text = rendered.text if rendered else args.get("text")
        blocks = args.get("blocks")
        _check_content(text, blocks)
        mode, channel = self._route(args, settings)
        payload = {"text": text or ""}
        if blocks:
            payload["blocks"] = blocks
        thread = _thread_ts(args.get("thread"))
        if thread and mode != "api":
            raise ActionError("notify.slack: replying in a thread needs a token "
                              "(chat.postMessage); an incoming webhook cannot thread")
        if mode == "api":
            payload["channel"] = channel
            if thread:
                payload["thread_ts"] = thread
        where = _shown_channel(channel, ctx)
        line = f"slack {where} via {'webhook' if mode == 'webhook' else 'chat.postMessage'}"
        line += f" (in thread {thread})" if thread else ""
        return Delivery(f"{line}: {preview(text or _blocks_text(blocks))}", payload,
                        {"mode": mode, "channel": channel, "settings": settings,
                         "timeout": self.timeout(args, settings)})

    def _route(self, args: dict, settings: dict) -> tuple[str, str | None]:
        if settings.get("webhook"):
            return "webhook", settings.get("channel")
        if settings.get("token"):
            channel = args.get("channel") or settings.get("channel")
            if not channel:
                raise ActionError("notify.slack: chat.postMessage needs a channel "
                                  "(the step's 'channel' or the target's)")
            return "api", channel
        raise ActionError("slack settings need 'webhook' (an incoming webhook URL) or "
                          "'token' and 'channel'")

    def deliver(self, delivery: Delivery, ctx: Context) -> Result:
        from engine.connections.http import HttpFailure, Request, send

        details, settings = delivery.details, delivery.details["settings"]
        api = details["mode"] == "api"
        url = (settings.get("api_base") or DEFAULT_API).rstrip("/") + "/chat.postMessage" \
            if api else settings["webhook"]
        label = (f"slack chat.postMessage to {details['channel']}" if api
                 else f"slack webhook of target '{ctx.target.get('name')}'")
        headers = {"Authorization": f"Bearer {settings['token']}"} if api else {}
        request = Request("POST", url, label, delivery.payload, headers, details["timeout"],
                          settings.get("ca_file"), [settings.get("webhook"), settings.get("token")],
                          deadline=ctx.deadline)
        try:
            answer = send(request)
        except HttpFailure as exc:
            raise http_error(exc) from None
        if api:
            return _api_result(answer, label, details["channel"], delivery.payload.get("thread_ts"))
        return Result(
            ok=True, changed=True, data={"via": "webhook", "channel": details["channel"],
                                         "tries": answer.attempts},
            message=f"posted to {_shown_channel(details['channel'], ctx)} via webhook")


def _api_result(answer, label: str, channel: str, thread: str | None) -> Result:
    body = answer.json()
    if not isinstance(body, dict) or not body.get("ok"):
        error = body.get("error") if isinstance(body, dict) else None
        raise ActionError(f"{label}: {error or 'unexpected answer'}")
    data = {"via": "api", "channel": body.get("channel") or channel, "ts": body.get("ts"),
            "thread_ts": thread, "tries": answer.attempts}
    return Result(ok=True, changed=True, data=data,
                  message=f"posted to {channel} (ts {body.get('ts')})")


def _check_content(text, blocks) -> None:
    if not text and not blocks:
        raise ActionError("notify.slack: the message is empty (give text, blocks or a message)")
    if text and len(text) > MAX_TEXT:
        raise ActionError(f"notify.slack: the text has {len(text)} characters; Slack's limit "
                          f"is {MAX_TEXT}")
    if blocks and len(blocks) > MAX_BLOCKS:
        raise ActionError(f"notify.slack: {len(blocks)} blocks; Slack accepts at most {MAX_BLOCKS}")
    for index, block in enumerate(blocks or ()):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise ActionError(f"notify.slack: blocks[{index}] needs a 'type'")


def _thread_ts(thread) -> str | None:
    if isinstance(thread, dict):
        thread = thread.get("thread_ts") or thread.get("ts")
        if not thread:
            raise ActionError("notify.slack: 'thread' has no ts (was the earlier message "
                              "posted with a token? webhooks return none)")
    return str(thread) if thread else None


def _shown_channel(channel: str | None, ctx: Context) -> str:
    if channel:
        return channel if channel.startswith(("#", "@", "C", "G", "D")) else f"#{channel}"
    return f"target {(ctx.target or {}).get('name', '?')}"


def _blocks_text(blocks) -> str:
    texts = []
    for block in blocks or ():
        text = block.get("text") if isinstance(block, dict) else None
        if isinstance(text, dict):
            texts.append(str(text.get("text", "")))
    return " ".join(texts) or f"{len(blocks or ())} block(s)"
