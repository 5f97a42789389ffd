"""HTTP actions: health checks (read-only) and requests (mutating). Standard library only."""
from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.request

from engine.actions.base import Action, ActionError, Context, Result
from engine.durations import parse_duration
from engine.secrets import mask_url

BODY_LIMIT = 64 * 1024

_PROPERTIES = {
    "url": {"type": "string", "description": "http:// or https:// URL."},
    "method": {"type": "string", "description": "HTTP method (default GET)."},
    "status": {"type": ["integer", "array", "string"], "items": {"type": "integer"},
               "description": "Expected status code(s) (default 200)."},
    "body_contains": {"type": "string", "description": "Text the body must contain."},
    "max_latency": {"type": ["string", "number"], "description": "Fail if slower (duration)."},
    "timeout": {"type": ["string", "number"], "description": "Give up after (default 10s)."},
    "verify_tls": {"type": "boolean", "description": "Check TLS certificates (default true)."},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    "body": {"type": "string", "description": "Request body."},
    "json": {"description": "Request body sent as JSON."},
}


class Check(Action):
    """Probe an HTTP endpoint: expected status, body text, latency."""

    name = "http.check"
    mutates = False
    args_schema = {"type": "object", "additionalProperties": False, "required": ["url"],
                   "properties": _PROPERTIES}

    def plan(self, args, ctx: Context) -> str:
        return f"{args.get('method', 'GET').upper()} {args['url']} expecting {_expected(args)}"

    def run(self, args, ctx: Context) -> Result:
        status, body, headers, elapsed_ms = _request(args, ctx)
        data = {"status": status, "elapsed_ms": elapsed_ms, "body": body[:BODY_LIMIT],
                "headers": headers}
        parsed = _json(body, headers)
        if parsed is not None:
            data["json"] = parsed
        problem = _problem(args, status, body, elapsed_ms)
        return Result(ok=problem is None, data=data,
                      message=problem or f"HTTP {status} in {elapsed_ms:.0f} ms")


class Request(Check):
    """Send an HTTP request that changes something (POST a status, trigger a job)."""

    name = "http.request"
    mutates = True

    def plan(self, args, ctx: Context) -> str:
        return f"{args.get('method', 'POST').upper()} {args['url']}"

    def run(self, args, ctx: Context) -> Result:
        """A request that succeeded changed something — unless it only read (GET/HEAD)."""
        result = super().run({"method": "POST", **args}, ctx)
        method = str(args.get("method", "POST")).upper()
        if result.ok and method not in ("GET", "HEAD", "OPTIONS"):
            result = Result(ok=True, changed=True, data=result.data, message=result.message)
        return result


def _expected(args) -> list[int]:
    status = args.get("status", 200)
    if isinstance(status, str):
        status = [int(s) for s in status.replace(",", " ").split()]
    return status if isinstance(status, list) else [int(status)]


def _request(args, ctx: Context):
    body = args.get("body")
    headers = dict(args.get("headers") or {})
    if "json" in args:
        body = json.dumps(args["json"])
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(args["url"], method=args.get("method", "GET").upper(),
                                     data=body.encode() if body is not None else None,
                                     headers=headers)
    timeout = ctx.time_left(parse_duration(args.get("timeout", 10)))
    context = None
    if args["url"].startswith("https") and args.get("verify_tls", True) is False:
        context = ssl._create_unverified_context()  # the author asked for it explicitly
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            raw, status, got = response.read(BODY_LIMIT + 1), response.status, response.headers
    except urllib.error.HTTPError as exc:
        raw, status, got = exc.read(BODY_LIMIT + 1), exc.code, exc.headers
    except urllib.error.URLError as exc:
        raise ActionError(f"{args['url']}: {exc.reason}") from None
    except (ValueError, http.client.InvalidURL):  # InvalidURL quotes the part it could not parse: a password, maybe
        raise ActionError(f"{mask_url(args['url'])}: invalid URL (its host, port or user "
                          "info cannot be parsed)") from None
    except (TimeoutError, OSError) as exc:
        raise ActionError(f"{args['url']}: {exc}") from None
    elapsed_ms = round((time.perf_counter() - start) * 1000, 1)
    return status, raw.decode("utf-8", errors="replace"), dict(got or {}), elapsed_ms


def _json(body: str, headers: dict):
    kind = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if "json" not in kind and not body.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _problem(args, status: int, body: str, elapsed_ms: float) -> str | None:
    if status not in _expected(args):
        return f"HTTP {status}, expected {' or '.join(map(str, _expected(args)))}"
    if args.get("body_contains") and args["body_contains"] not in body:
        return f"body does not contain {args['body_contains']!r}"
    if "max_latency" in args:
        limit = parse_duration(args["max_latency"]) * 1000
        if elapsed_ms > limit:
            return f"took {elapsed_ms:.0f} ms, more than {limit:.0f} ms"
    return None
