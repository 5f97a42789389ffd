"""``notify.email``: an e-mail over SMTP, plain text with an optional HTML part.

Target settings ``email: {host, port, tls: starttls|implicit|none, user,
password, from, ca_file, to, cc}``; the password is a secret. ``to``/``cc`` in
the target are the default recipients (a target is a mailing list: the
incident team, the customers' list), the step's own replace them. Never a
silent downgrade (see ``engine.connections.smtp``). The Message-ID is stable
per run and step, so a mail client shows a re-sent copy as the same message.
"""
from __future__ import annotations

import re

from engine.actions.base import ActionError, Context, Result
from engine.actions.notify.common import (COMMON_ARGS, Delivery, NotifyAction, delivery_key,
                                          preview, require)

_ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9.-]+$")
MAX_SUBJECT = 998  # RFC 5322 line length
_ADDRESSES = {"type": ["string", "array"], "items": {"type": "string"}}


class Email(NotifyAction):
    """Send an e-mail (SMTP with STARTTLS, implicit TLS or none; AUTH)."""

    name = "notify.email"
    channel = "email"
    secret_settings = ("password",)
    args_schema = {
        "type": "object", "additionalProperties": False,
        "anyOf": [{"required": ["text"]}, {"required": ["html"]}, {"required": ["message"]}],
        "not": {"required": ["text", "message"]},
        "properties": {
            "to": {**_ADDRESSES, "description": "Recipients (default: the target's `to`)."},
            "cc": {**_ADDRESSES, "description": "Copy (default: the target's `cc`)."},
            "bcc": {**_ADDRESSES, "description": "Blind copy."},
            "subject": {"type": "string", "description": "Subject (default: the message's)."},
            "text": {"type": "string", "description": "Plain text body."},
            "html": {"type": "string", "description": "HTML body (sent as an alternative)."},
            "from": {"type": "string", "description": "Sender (default: the target's `from`)."},
            "reply_to": {"type": "string"},
            **COMMON_ARGS,
        },
    }

    def prepare(self, args: dict, ctx: Context) -> Delivery:
        settings = self.settings(ctx)
        rendered = self.rendered(args, ctx)
        subject = args.get("subject") or (rendered.subject if rendered else None)
        text = rendered.text if rendered else args.get("text")
        html = args.get("html") or (rendered.html if rendered else None)
        _check_subject(subject)
        recipients = {kind: _addresses(args.get(kind, settings.get(kind)), kind)
                      for kind in ("to", "cc", "bcc")}
        if not any(recipients.values()):
            raise ActionError("notify.email: no recipients (give 'to' here or in the target)")
        sender = str(args.get("from") or require(settings, "from", self.where(ctx)))
        _addresses(sender, "from")
        smtp = _smtp_settings(settings, self.timeout(args, settings), self.where(ctx))
        message = _build(ctx, sender, recipients, subject, text, html, args.get("reply_to"))
        shown = ", ".join(recipients["to"] or recipients["cc"] or ["(bcc only)"])
        extra = sum(len(v) for v in recipients.values()) - len(recipients["to"] or
                                                               recipients["cc"])
        line = (f"email to {shown}{f' (+{extra} more)' if extra > 0 else ''}: {preview(subject)}"
                f" via {smtp.where} ({smtp.tls})")
        everyone = [a for kind in ("to", "cc", "bcc") for a in recipients[kind]]
        return Delivery(line, message, {"smtp": smtp, "sender": sender, "recipients": everyone})

    def deliver(self, delivery: Delivery, ctx: Context) -> Result:
        from engine.connections.smtp import SmtpFailure, send_message

        details = delivery.details
        try:
            refused = send_message(details["smtp"], delivery.payload, details["sender"],
                                   details["recipients"])
        except SmtpFailure as exc:
            raise ActionError(str(exc)) from None
        accepted = [a for a in details["recipients"] if a not in refused]
        data = {"recipients": accepted, "refused": refused, "subject": delivery.payload["Subject"],
                "message_id": delivery.payload["Message-ID"]}
        if refused:
            return Result(ok=False, changed=True, data=data,
                          message=f"sent to {len(accepted)} recipient(s), refused: "
                                  + ", ".join(f"{a} ({why})" for a, why in refused.items()))
        return Result(ok=True, changed=True, data=data,
                      message=f"sent to {len(accepted)} recipient(s) via {details['smtp'].where}")


def _smtp_settings(settings: dict, timeout: float, where: str):
    from engine.connections.smtp import DEFAULT_PORTS, TLS_MODES, SmtpSettings

    tls = settings.get("tls", "starttls")
    if tls not in TLS_MODES:
        raise ActionError(f"{where}: tls must be one of {', '.join(TLS_MODES)}, got {tls!r}")
    host = str(require(settings, "host", where))
    user = settings.get("user")
    if user and not settings.get("password"):
        raise ActionError(f"{where}: 'user' is set but 'password' is missing")
    try:
        port = int(settings.get("port") or DEFAULT_PORTS[tls])
    except (TypeError, ValueError):
        raise ActionError(f"{where}: port must be a number, got {settings.get('port')!r}") from None
    return SmtpSettings(host=host, port=port, tls=tls, user=user, timeout=timeout,
                        password=settings.get("password"), ca_file=settings.get("ca_file"))


def _addresses(value, kind: str) -> list[str]:
    from email.utils import getaddresses

    if value in (None, "", []):
        return []
    raw = [value] if isinstance(value, str) else [str(v) for v in value]
    found = []
    for item in raw:
        if "\n" in item or "\r" in item:
            raise ActionError(f"notify.email: {kind}: line breaks are not allowed in addresses")
        parsed = [address for _, address in getaddresses([item])]
        if not parsed or not all(_ADDRESS.match(address or "") for address in parsed):
            raise ActionError(f"notify.email: {kind}: {item!r} is not an e-mail address")
        found += parsed
    return found


def _check_subject(subject) -> None:
    if not subject or not str(subject).strip():
        raise ActionError("notify.email: a subject is needed (the step's 'subject' or the "
                          "message's)")
    if "\n" in subject or "\r" in subject:
        raise ActionError("notify.email: the subject must be one line")
    if len(subject) > MAX_SUBJECT:
        raise ActionError(f"notify.email: the subject has {len(subject)} characters "
                          f"(at most {MAX_SUBJECT})")


def _build(ctx: Context, sender: str, recipients: dict, subject: str, text, html, reply_to):
    import socket
    from email.message import EmailMessage
    from email.utils import formatdate

    if not text and not html:
        raise ActionError("notify.email: the body is empty (give text, html or a message)")
    message = EmailMessage()
    message["From"] = sender
    if recipients["to"]:
        message["To"] = ", ".join(recipients["to"])
    if recipients["cc"]:
        message["Cc"] = ", ".join(recipients["cc"])
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    local = re.sub(r"[^A-Za-z0-9._-]", ".", delivery_key(ctx))
    message["Message-ID"] = f"<{local}@{socket.gethostname() or 'runbook'}>"
    message["X-Runbook-Run"] = ctx.run_id or "-"
    message.set_content(text or "This message has an HTML part only.")
    if html:
        message.add_alternative(html, subtype="html")
    return message
