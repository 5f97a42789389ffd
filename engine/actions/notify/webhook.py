"""``notify.webhook``: a JSON POST/PUT/PATCH to any endpoint, optionally signed.

Target settings ``webhook: {url, headers, secret, signature_header, ca_file}``.
The URL (it often carries a token), the header values and the signing secret
are secrets: plans and errors show only the scheme and host. With ``secret``
the body is signed with HMAC-SHA256 in ``X-Runbook-Signature: sha256=<hex>``
(GitHub's format). Every request carries an ``Idempotency-Key`` stable for the
run and step, so a receiver that honours it ignores a re-sent copy.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import urlsplit

from engine.actions.base import ActionError, Context, Result
from engine.actions.notify.common import (COMMON_ARGS, Delivery, NotifyAction, delivery_key,
                                          http_error)

SIGNATURE_HEADER = "X-Runbook-Signature"
BODY_LIMIT = 4096


class Webhook(NotifyAction):
    """Send JSON to a webhook (POST/PUT/PATCH, headers, HMAC signature, expected status)."""

    name = "notify.webhook"
    channel = "webhook"
    secret_settings = ("url", "secret")
    args_schema = {
        "type": "object", "additionalProperties": False,
        "anyOf": [{"required": ["json"]}, {"required": ["message"]}],
        "not": {"required": ["json", "message"]},
        "properties": {
            "json": {"description": "The body, sent as JSON."},
            "url": {"type": "string", "description": "Default: the target's url (secret)."},
            "path": {"type": "string", "description": "Appended to the target's url."},
            "method": {"enum": ["POST", "PUT", "PATCH"], "description": "Default POST."},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "status": {"type": ["integer", "array"], "items": {"type": "integer"},
                       "description": "Expected status(es) (default: any 2xx)."},
            **COMMON_ARGS,
        },
    }

    def prepare(self, args: dict, ctx: Context) -> Delivery:
        settings = self.settings(ctx) if ctx.target else {}
        url = _url(args, settings)
        if ctx.redactor is not None:
            ctx.redactor.add([url, *_secret_headers(settings.get("headers"))])
        body = args["json"] if "json" in args else _message_body(self.rendered(args, ctx), args,
                                                                 ctx)
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": delivery_key(ctx),
                   **(settings.get("headers") or {}), **(args.get("headers") or {})}
        signed = bool(settings.get("secret"))
        if signed:
            digest = hmac.new(str(settings["secret"]).encode(), raw, hashlib.sha256).hexdigest()
            headers[settings.get("signature_header") or SIGNATURE_HEADER] = f"sha256={digest}"
        method = args.get("method", "POST")
        line = (f"webhook {method} {shown_url(url)} (json, {len(raw)} bytes"
                f"{', signed' if signed else ''})")
        return Delivery(line, raw, {"url": url, "method": method, "headers": headers,
                                    "settings": settings, "expected": _expected(args),
                                    "timeout": self.timeout(args, settings)})

    def deliver(self, delivery: Delivery, ctx: Context) -> Result:
        from engine.connections.http import HttpFailure, Request, send

        details = delivery.details
        expected = details["expected"]
        secrets = [details["url"], details["settings"].get("secret"),
                   *_secret_headers(details["settings"].get("headers"))]
        request = Request(details["method"], details["url"],
                          f"webhook {details['method']} {shown_url(details['url'])}",
                          headers=details["headers"], timeout=details["timeout"],
                          ca_file=details["settings"].get("ca_file"), secrets=secrets,
                          accept=(lambda s: 200 <= s < 300) if expected is None
                          else (lambda s: s in expected),
                          deadline=ctx.deadline, raw_body=delivery.payload)
        try:
            answer = send(request)
        except HttpFailure as exc:
            raise http_error(exc) from None
        data = {"status": answer.status, "body": answer.body[:BODY_LIMIT],
                "tries": answer.attempts}
        if answer.json() is not None:
            data["json"] = answer.json()
        return Result(ok=True, changed=True, data=data,
                      message=f"HTTP {answer.status} from {shown_url(details['url'])}")


def shown_url(url: str) -> str:
    """Scheme and host only: the path or query of a webhook URL often is its secret."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


_SECRET_HEADER_WORDS = ("auth", "token", "key", "secret", "cookie", "signature", "password")


def _secret_headers(headers) -> list[str]:
    """Values of the target's headers that carry credentials (Authorization, X-Api-Key ...)."""
    return [str(v) for k, v in (headers or {}).items()
            if any(word in k.lower() for word in _SECRET_HEADER_WORDS)]


def _url(args: dict, settings: dict) -> str:
    url = args.get("url") or settings.get("url")
    if not url:
        raise ActionError("notify.webhook needs a 'url' (here, or in the target's "
                          "'webhook:' settings)")
    url = str(url)
    if args.get("path"):
        url = url.rstrip("/") + "/" + str(args["path"]).lstrip("/")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise ActionError(f"notify.webhook: the url must be http:// or https:// "
                          f"(got {shown_url(url)})")
    return url


def _message_body(rendered, args: dict, ctx: Context) -> dict:
    body = {"message": args["message"], "audience": args.get("audience"),
            "text": rendered.text, "run_id": ctx.run_id}
    if rendered.subject:
        body["subject"] = rendered.subject
    return body


def _expected(args: dict):
    status = args.get("status")
    if status is None:
        return None
    return set(status) if isinstance(status, list) else {status}
