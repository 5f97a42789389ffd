"""E-mail over SMTP (smtplib): STARTTLS, implicit TLS or none; AUTH; a private CA.

Never a silent downgrade: with ``tls: starttls`` a server that does not offer
STARTTLS is a failure (smtplib would happily go on in clear text), and a
password is never sent over a connection that is not encrypted. Certificates
are verified against the system's CAs, or ``ca_file``. Errors quote the
server's answer (code and text) and name host and port, never the password.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TLS_MODES = ("starttls", "implicit", "none")
DEFAULT_PORTS = {"starttls": 587, "implicit": 465, "none": 25}


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    tls: str = "starttls"
    user: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout: float = 15.0

    @property
    def where(self) -> str:
        return f"smtp {self.host}:{self.port}"


class SmtpFailure(Exception):
    """Sending failed. ``delivered``: False (nothing sent), None (unknown) or True (partly:
    ``refused`` names the recipients the server refused, with its answer)."""

    def __init__(self, message: str, delivered: bool | None = False,
                 refused: dict | None = None) -> None:
        super().__init__(message)
        self.delivered = delivered
        self.refused = refused or {}


def send_message(settings: SmtpSettings, message: Any, sender: str,
                 recipients: list[str]) -> dict[str, str]:
    """Send ``message`` (an ``email.message.EmailMessage``) to ``recipients``.

    Returns the recipients the server refused (``{address: "550 ..."}``) when it
    accepted the others; raises ``SmtpFailure`` when nothing was sent.
    """
    import smtplib

    client = _connect(settings)
    try:
        _secure(client, settings)
        _authenticate(client, settings)
        refused = _transmit(client, settings, message, sender, recipients)
    except smtplib.SMTPException as exc:
        raise SmtpFailure(f"{settings.where}: {_answer(exc, settings)}") from None
    except OSError as exc:
        raise SmtpFailure(f"{settings.where}: {_os_reason(exc, settings)}") from None
    finally:
        _close(client)
    return refused


def _connect(settings: SmtpSettings):
    import smtplib

    try:
        if settings.tls == "implicit":
            return smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout,
                                    context=_tls_context(settings))
        return smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    except smtplib.SMTPException as exc:
        raise SmtpFailure(f"{settings.where}: {_answer(exc, settings)}") from None
    except OSError as exc:
        raise SmtpFailure(f"{settings.where}: cannot connect: {_os_reason(exc, settings)}") from None


def _secure(client, settings: SmtpSettings) -> None:
    client.ehlo()
    if settings.tls != "starttls":
        return
    if not client.has_extn("starttls"):
        raise SmtpFailure(f"{settings.where}: the server does not offer STARTTLS; refusing to "
                          "send in clear text (tls: starttls; use tls: none only for a server "
                          "that cannot encrypt)")
    client.starttls(context=_tls_context(settings))
    client.ehlo()


def _authenticate(client, settings: SmtpSettings) -> None:
    if not settings.user:
        return
    if settings.tls == "none":
        raise SmtpFailure(f"{settings.where}: refusing to send the password of user "
                          f"{settings.user!r} over an unencrypted connection (tls: none)")
    if not client.has_extn("auth"):
        raise SmtpFailure(f"{settings.where}: the server does not offer AUTH (user "
                          f"{settings.user!r} was configured)")
    import smtplib

    try:
        client.login(settings.user, settings.password or "")
    except smtplib.SMTPAuthenticationError as exc:
        raise SmtpFailure(f"{settings.where}: AUTH failed for user {settings.user!r}: "
                          f"{_answer(exc, settings)}") from None


def _transmit(client, settings: SmtpSettings, message, sender: str, recipients: list[str]
              ) -> dict[str, str]:
    import smtplib

    try:
        refused = client.send_message(message, from_addr=sender, to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = {addr: _code_text(*answer) for addr, answer in exc.recipients.items()}
        raise SmtpFailure(f"{settings.where}: every recipient was refused: "
                          + _listed(refused), refused=refused) from None
    except smtplib.SMTPSenderRefused as exc:
        raise SmtpFailure(f"{settings.where}: sender {sender} refused: "
                          f"{_code_text(exc.smtp_code, exc.smtp_error)}") from None
    except smtplib.SMTPDataError as exc:
        raise SmtpFailure(f"{settings.where}: message refused: "
                          f"{_code_text(exc.smtp_code, exc.smtp_error)}") from None
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        raise SmtpFailure(f"{settings.where}: connection lost while sending "
                          f"({_os_reason(exc, settings)}); the message may or may not have "
                          "been delivered", delivered=None) from None
    return {addr: _code_text(*answer) for addr, answer in (refused or {}).items()}


def _close(client) -> None:
    try:
        client.quit()
    except Exception:  # the message is already accepted (or not); closing must not decide
        try:
            client.close()
        except Exception:
            pass


def _tls_context(settings: SmtpSettings):
    import ssl

    return ssl.create_default_context(cafile=settings.ca_file)


def _answer(exc: Exception, settings: SmtpSettings) -> str:
    code = getattr(exc, "smtp_code", None)
    text = getattr(exc, "smtp_error", None)
    if code is not None:
        return _mask(_code_text(code, text), settings)
    return _mask(str(exc) or type(exc).__name__, settings)


def _os_reason(exc: BaseException, settings: SmtpSettings) -> str:
    import ssl

    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {exc.verify_message or exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {settings.timeout:g}s"
    return _mask(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__, settings)


def _code_text(code: Any, text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return " ".join(f"{code} {text or ''}".split())


def _listed(refused: dict[str, str]) -> str:
    return ", ".join(f"{addr} ({answer})" for addr, answer in refused.items())


def _mask(text: str, settings: SmtpSettings) -> str:
    if settings.password and len(settings.password) >= 4:
        text = text.replace(settings.password, "***")
    return text
