"""JSON over HTTP for the senders of notifications: one request, retried with backoff.

Standard library only (urllib, ssl), imported when a step sends. TLS
certificates are always verified; ``ca_file`` adds a private CA. Every error
names a label the caller chooses ("slack webhook of target incidents") and
never the URL: a Slack webhook URL, a token in a query string or a routing key
in a body are secrets, and server answers are masked with the caller's secrets
before they are quoted.

Retries: HTTP 429 (honouring ``Retry-After``), 5xx and failures to connect are
tried again with exponential backoff. A request that was sent and then got no
answer (read timeout, connection dropped) may have been delivered: it is
retried only when the caller says re-sending is harmless (``idempotent``),
otherwise the error says the delivery is unknown.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
SNIPPET = 200


@dataclass(frozen=True)
class Retry:
    """``attempts`` in all; pauses of ``backoff``, doubling, at most ``max_pause`` seconds."""

    attempts: int = 3
    backoff: float = 0.5
    max_pause: float = 8.0

    def pause(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_pause)
        return min(self.backoff * (2 ** (attempt - 1)), self.max_pause)


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    headers: dict = field(default_factory=dict)
    attempts: int = 1

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class HttpFailure(Exception):
    """The request failed for good. ``str()`` is safe to show: no URL, no secret.

    ``status`` is the last HTTP status (None when there was no answer),
    ``body`` the last answer's text (masked), ``delivered`` is None when the
    request may or may not have reached the server.
    """

    def __init__(self, message: str, status: int | None = None, body: str = "",
                 attempts: int = 1, delivered: bool | None = False) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.attempts = attempts
        self.delivered = delivered


@dataclass
class Request:
    """One request to send. ``label`` names it in errors instead of the URL."""

    method: str
    url: str
    label: str
    payload: Any = None
    headers: dict = field(default_factory=dict)
    timeout: float = 10.0
    ca_file: str | None = None
    #: values to mask in anything quoted from the server
    secrets: Iterable[str] = ()
    #: re-sending after a lost answer is harmless (dedup key, idempotency key)
    idempotent: bool = False
    #: statuses that are an answer to return (others raise HttpFailure)
    accept: Callable[[int], bool] = lambda status: 200 <= status < 300
    #: ``time.monotonic()`` by which everything must be over (the step's deadline)
    deadline: float | None = None
    raw_body: bytes | None = None  # send these bytes instead of JSON (signed webhooks)


def send(request: Request, retry: Retry = Retry(), wait: Callable[[float], Any] = time.sleep
         ) -> Response:
    """Send ``request``, retrying what is safe to retry; return the accepted answer."""
    masker = _masker(request)
    attempt = 0
    while True:
        attempt += 1
        outcome = _attempt(request, masker, attempt)
        if isinstance(outcome, Response):
            return outcome
        failure, retryable, retry_after = outcome
        pause = retry.pause(attempt, retry_after)
        if not retryable or attempt >= retry.attempts or not _time_for(request, pause):
            raise failure
        wait(pause)


def _attempt(request: Request, masker, attempt: int):
    """A Response, or (HttpFailure, retryable, retry_after seconds)."""
    import ssl
    import urllib.error

    label = request.label
    if request.deadline is not None and request.deadline - time.monotonic() <= 0:
        return HttpFailure(f"{label}: the step's time ran out before sending",
                           attempts=attempt), False, None
    try:
        status, body, headers = _exchange(request)
    except urllib.error.URLError as exc:  # before or while sending: nothing was delivered
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return HttpFailure(f"{label}: TLS certificate verification failed: "
                               f"{masker(reason.verify_message or str(reason))}",
                               attempts=attempt), False, None
        return HttpFailure(f"{label}: cannot connect: {masker(_reason(reason))}",
                           attempts=attempt), True, None
    except (TimeoutError, ConnectionError, OSError) as exc:  # sent, no answer
        what = "no answer in time" if isinstance(exc, TimeoutError) else masker(_reason(exc))
        return HttpFailure(f"{label}: {what} — the request may or may not have been delivered",
                           attempts=attempt, delivered=None), request.idempotent, None
    except ValueError as exc:  # a malformed URL: the caller's settings
        return HttpFailure(f"{label}: invalid URL ({masker(str(exc))})"), False, None
    body = masker(body)
    if request.accept(status):
        return Response(status, body, headers, attempt)
    failure = HttpFailure(f"{label}: HTTP {status}{_snippet(body)}", status, body, attempt)
    return failure, status in RETRY_STATUSES, _retry_after(headers)


def _exchange(request: Request) -> tuple[int, str, dict]:
    import urllib.error
    import urllib.request

    headers = {"User-Agent": "runbook-engine", **request.headers}
    data = request.raw_body
    if data is None and request.payload is not None:
        data = json.dumps(request.payload).encode()
        headers.setdefault("Content-Type", "application/json")
    prepared = urllib.request.Request(request.url, data=data, method=request.method.upper(),
                                      headers=headers)
    timeout = _timeout(request)
    try:
        with urllib.request.urlopen(prepared, timeout=timeout,
                                    context=_tls_context(request)) as answer:
            raw, status, got = answer.read(64 * 1024), answer.status, answer.headers
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(64 * 1024), exc.code, exc.headers
    return status, raw.decode("utf-8", errors="replace"), dict(got or {})


def _tls_context(request: Request):
    if not request.url.lower().startswith("https:"):
        return None
    import ssl

    return ssl.create_default_context(cafile=request.ca_file)


def _timeout(request: Request) -> float:
    if request.deadline is None:
        return request.timeout
    return max(0.05, min(request.timeout, request.deadline - time.monotonic()))


def _time_for(request: Request, pause: float) -> bool:
    return request.deadline is None or time.monotonic() + pause < request.deadline


def _retry_after(headers: dict) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.lower() if text[:1].isupper() and " " in text else text


def _snippet(body: str) -> str:
    """The useful part of an error answer, on one line."""
    text = body.strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        parts = [str(parsed[k]) for k in ("error", "message", "errors") if parsed.get(k)]
        text = "; ".join(parts) or text
    text = " ".join(text.split())
    if not text:
        return ""
    return ": " + (text if len(text) <= SNIPPET else text[:SNIPPET - 1] + "…")


def _masker(request: Request) -> Callable[[str], str]:
    secrets = sorted({str(s) for s in (*request.secrets, request.url) if s and len(str(s)) >= 4},
                     key=len, reverse=True)

    def mask(text: str) -> str:
        text = str(text)
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    return mask
