"""The inbox's servers: an HTTP receiver that answers like Slack, PagerDuty, Statuspage and
generic webhooks, and three SMTP servers (aiosmtpd) — STARTTLS, implicit TLS and plain.

Everything received is appended to a JSON-lines file (one record per request or
mail), which ``runbook lab inbox`` lists and tests count. The answers follow the
services' documented contracts:

- Slack incoming webhook ``POST /services/T…/B…/…``: ``200 ok``; 404 ``no_service`` for an
  unknown webhook, 400 ``invalid_payload``/``no_text``.
- Slack Web API ``POST /api/chat.postMessage`` (``Authorization: Bearer``): 200 with
  ``{"ok": true, "channel", "ts"}`` or ``{"ok": false, "error"}``.
- PagerDuty Events v2 ``POST /v2/enqueue``: 202 with ``dedup_key``; 400 ``invalid event``.
  Incidents are kept by routing key and dedup key: a trigger for an open incident is
  folded into it (``incident_opened: false``), as PagerDuty does.
- Statuspage v1 ``/v1/pages/PAGE/{components,incidents}`` with ``Authorization: OAuth KEY``.
- Generic webhooks ``/hooks/...``; under ``/hooks/signed/`` the HMAC-SHA256 signature
  (``X-Runbook-Signature: sha256=…``) must match; a repeated ``Idempotency-Key`` is
  answered as a duplicate.

Faults for drills and tests, on any URL's query: ``?delay=SECONDS`` (answer late),
``?status=CODE`` (answer that), ``?fail_first=N`` (503 for the first N requests to
that exact URL). The request is recorded before the answer, so a client killed while
waiting still left its trace.
"""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import secrets
import threading
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

COMPONENT_STATUSES = ("operational", "degraded_performance", "partial_outage", "major_outage",
                      "under_maintenance")
INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved", "scheduled",
                     "in_progress", "verifying", "completed")
PD_ACTIONS = ("trigger", "acknowledge", "resolve")
PD_SEVERITIES = ("critical", "error", "warning", "info")


class Recorder:
    """Appends one JSON line per received request or mail (thread-safe)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seq = 0

    def record(self, **fields) -> dict:
        with self._lock:
            self._seq += 1
            entry = {"seq": self._seq, "ts": datetime.now(timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"), **fields}
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry, default=str) + "\n")
        return entry


class Services:
    """The state and answers of the emulated HTTP services (one per inbox)."""

    def __init__(self, config: dict, recorder: Recorder) -> None:
        self.config = config
        self.recorder = recorder
        self.lock = threading.Lock()
        self.incidents: dict[tuple, dict] = {}      # PagerDuty, by (routing key, dedup key)
        self.components = {f"cmp{index:04d}": {"id": f"cmp{index:04d}", "name": name,
                                               "status": "operational"}
                           for index, name in enumerate(config["statuspage"]["components"])}
        self.page_incidents: dict[str, dict] = {}   # Statuspage, by id
        self.idempotency_keys: set[str] = set()
        self.fault_counts: dict[str, int] = {}
        self.last_ts = 0.0

    # --- Slack ---
    def slack_webhook(self, path: str, body) -> tuple[int, object, dict]:
        channel = self.config["slack_webhooks"].get(path)
        if channel is None:
            return 404, "no_service", {"channel": "slack", "recipient": "?"}
        if not isinstance(body, dict):
            return 400, "invalid_payload", {"channel": "slack", "recipient": channel}
        text = body.get("text") or _blocks_text(body.get("blocks"))
        if not text:
            return 400, "no_text", {"channel": "slack", "recipient": channel}
        return 200, "ok", {"channel": "slack", "recipient": channel, "subject": text,
                           "via": "webhook"}

    def slack_post(self, headers: dict, body) -> tuple[int, object, dict]:
        info = {"channel": "slack", "via": "api"}
        if headers.get("authorization") != f"Bearer {self.config['slack_token']}":
            return 200, {"ok": False, "error": "invalid_auth"}, {**info, "recipient": "?"}
        if not isinstance(body, dict) or not body.get("channel"):
            return 200, {"ok": False, "error": "channel_not_found"}, {**info, "recipient": "?"}
        channel = str(body["channel"])
        info.update(recipient=channel, subject=body.get("text") or _blocks_text(body.get("blocks")))
        if not info["subject"]:
            return 200, {"ok": False, "error": "no_text"}, info
        ts = self._next_ts()
        info.update(ts=ts, thread_ts=body.get("thread_ts"))
        message = {"text": body.get("text"), "ts": ts}
        if body.get("thread_ts"):
            message["thread_ts"] = body["thread_ts"]
        channel_id = "C" + hashlib.sha256(channel.encode()).hexdigest()[:8].upper()
        return 200, {"ok": True, "channel": channel_id, "ts": ts, "message": message}, info

    def _next_ts(self) -> str:
        with self.lock:
            self.last_ts = max(time.time(), self.last_ts + 0.000001)
            return f"{self.last_ts:.6f}"

    # --- PagerDuty ---
    def pagerduty(self, body) -> tuple[int, object, dict]:
        info = {"channel": "pagerduty"}
        problems = _pagerduty_problems(body, self.config["pagerduty_keys"])
        if problems:
            info["recipient"] = "?"
            return 400, {"status": "invalid event", "message": "Event object is invalid",
                         "errors": problems}, info
        key = body.get("dedup_key") or secrets.token_hex(16)
        action = body["event_action"]
        service = self.config["pagerduty_keys"][body["routing_key"]]
        info.update(recipient=service, action=action, dedup_key=key,
                    subject=(body.get("payload") or {}).get("summary", f"{action} {key}"),
                    severity=(body.get("payload") or {}).get("severity"))
        info.update(self._pagerduty_incident((body["routing_key"], key), action))
        return 202, {"status": "success", "message": "Event processed", "dedup_key": key}, info

    def _pagerduty_incident(self, ident: tuple, action: str) -> dict:
        with self.lock:
            incident = self.incidents.get(ident)
            if action == "trigger":
                if incident is None or incident["status"] == "resolved":
                    self.incidents[ident] = {"status": "triggered", "events": 1}
                    return {"incident_opened": True}
                incident["events"] += 1
                return {"incident_opened": False, "deduplicated": True}
            if incident is not None and incident["status"] != "resolved":
                incident["status"] = "acknowledged" if action == "acknowledge" else "resolved"
            return {"incident_opened": False}

    # --- Statuspage ---
    def statuspage(self, method: str, path: str, headers: dict, body) -> tuple[int, object, dict]:
        page = self.config["statuspage"]
        info = {"channel": "statuspage", "recipient": f"page {page['page_id']}"}
        if headers.get("authorization") != f"OAuth {page['api_key']}":
            return 401, {"error": "Could not authenticate"}, info
        parts = path.strip("/").split("/")  # v1 pages PAGE kind [id]
        if len(parts) < 4 or parts[2] != page["page_id"]:
            return 404, {"error": "The requested resource could not be found."}, info
        kind, ident = parts[3], (parts[4] if len(parts) > 4 else None)
        if kind == "components":
            return self._components(method, ident, body, info)
        if kind == "incidents":
            return self._incidents(method, ident, body, info)
        return 404, {"error": "The requested resource could not be found."}, info

    def _components(self, method, ident, body, info):
        if method == "GET" and ident is None:
            return 200, list(self.components.values()), {**info, "lookup": True}
        component = self.components.get(ident or "")
        if component is None:
            return 404, {"error": "The requested resource could not be found."}, info
        status = ((body or {}).get("component") or {}).get("status")
        if method != "PATCH" or status not in COMPONENT_STATUSES:
            return 422, {"error": "Status is not included in the list"}, info
        component["status"] = status
        return 200, component, {**info, "subject": f"component {component['name']} → {status}"}

    def _incidents(self, method, ident, body, info):
        if method == "GET":
            found = self.page_incidents.get(ident or "")
            if found is None:
                return 404, {"error": "The requested resource could not be found."}, info
            return 200, found, {**info, "lookup": True}
        fields = (body or {}).get("incident") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            return 422, {"error": "incident is missing"}, info
        if fields.get("status") is not None and fields["status"] not in INCIDENT_STATUSES:
            return 422, {"error": "Status is not included in the list"}, info
        if method == "POST":
            if not fields.get("name"):
                return 422, {"error": "Name can't be blank"}, info
            ident = secrets.token_hex(6)
            self.page_incidents[ident] = {"id": ident, "name": fields["name"], "status":
                                          "investigating", "shortlink": f"https://stspg.io/{ident}",
                                          "incident_updates": [], "components": []}
        incident = self.page_incidents.get(ident or "")
        if incident is None:
            return 404, {"error": "The requested resource could not be found."}, info
        self._apply(incident, fields)
        subject = f"{incident['name']} ({incident['status']})"
        return (201 if method == "POST" else 200), incident, {**info, "subject": subject,
                                                              "incident": ident}

    def _apply(self, incident: dict, fields: dict) -> None:
        for key in ("name", "status", "impact_override"):
            if fields.get(key):
                incident[key] = fields[key]
        for ident, status in (fields.get("components") or {}).items():
            if ident in self.components and status in COMPONENT_STATUSES:
                self.components[ident]["status"] = status
        incident["components"] = [self.components[i] for i in fields.get("component_ids") or ()
                                  if i in self.components] or incident["components"]
        incident["incident_updates"].append({"status": incident["status"],
                                             "body": fields.get("body", "")})

    # --- generic webhooks ---
    def hook(self, path: str, headers: dict, raw: bytes, body) -> tuple[int, object, dict]:
        info = {"channel": "webhook", "recipient": path,
                "subject": json.dumps(body)[:200] if body is not None else raw[:200].decode(
                    "utf-8", "replace")}
        if path.startswith("/hooks/signed"):
            wanted = "sha256=" + hmac.new(self.config["webhook_secret"].encode(), raw,
                                          hashlib.sha256).hexdigest()
            if not hmac.compare_digest(headers.get("x-runbook-signature", ""), wanted):
                return 401, {"error": "bad signature"}, {**info, "signed": False}
            info["signed"] = True
        key = headers.get("idempotency-key")
        with self.lock:
            duplicate = key is not None and key in self.idempotency_keys
            if key:
                self.idempotency_keys.add(key)
        return 200, {"received": True, "duplicate": duplicate}, {**info, "duplicate": duplicate,
                                                                 "idempotency_key": key}

    # --- faults ---
    def fault(self, raw_path: str, query: dict) -> int | None:
        if "status" in query:
            return int(query["status"][0])
        if "fail_first" in query:
            with self.lock:
                count = self.fault_counts[raw_path] = self.fault_counts.get(raw_path, 0) + 1
            if count <= int(query["fail_first"][0]):
                return 503
        return None


def _pagerduty_problems(body, keys: dict) -> list[str]:
    if not isinstance(body, dict):
        return ["Event object is not JSON"]
    problems = []
    if body.get("routing_key") not in keys:
        problems.append("'routing_key' is invalid")
    if body.get("event_action") not in PD_ACTIONS:
        problems.append("'event_action' is missing or invalid")
    if body.get("event_action") in ("acknowledge", "resolve") and not body.get("dedup_key"):
        problems.append("'dedup_key' is missing")
    if body.get("event_action") == "trigger":
        payload = body.get("payload") or {}
        for key in ("summary", "source", "severity"):
            if not payload.get(key):
                problems.append(f"'payload.{key}' is missing")
        if payload.get("severity") and payload["severity"] not in PD_SEVERITIES:
            problems.append("'payload.severity' is invalid")
        if len(str(payload.get("summary", ""))) > 1024:
            problems.append("'payload.summary' is longer than 1024 characters")
    return problems


def _blocks_text(blocks) -> str:
    if not isinstance(blocks, list):
        return ""
    return " ".join(str((b.get("text") or {}).get("text", "")) for b in blocks
                    if isinstance(b, dict) and isinstance(b.get("text"), dict)).strip()


class Handler(http.server.BaseHTTPRequestHandler):
    services: Services  # set on the subclass made per server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _handle(self) -> None:
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = _json(raw)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, answer, info = self._route(split.path, headers, raw, body)
        if isinstance(body, dict) and "routing_key" in body:
            body = {**body, "routing_key": "***"}  # the inbox's listing never shows a credential
        forced = self.services.fault(self.path, query)
        if forced is not None:
            status, answer = forced, {"error": f"fault injected: HTTP {forced}"}
        self.services.recorder.record(
            method=self.command, answered=status, body=body if body is not None else
            raw.decode("utf-8", "replace")[:2000],
            headers={k: v for k, v in headers.items() if k != "authorization"}, **info)
        if "delay" in query:
            time.sleep(float(query["delay"][0]))
        self._answer(status, answer)

    def _route(self, path: str, headers: dict, raw: bytes, body):
        services = self.services
        if path.startswith("/services/"):
            return services.slack_webhook(path, body)
        if path == "/api/chat.postMessage":
            return services.slack_post(headers, body)
        if path == "/v2/enqueue":
            return services.pagerduty(body)
        if path.startswith("/v1/pages/"):
            return services.statuspage(self.command, path, headers, body)
        if path.startswith("/hooks/"):
            return services.hook(path, headers, raw, body)
        return 404, {"error": "no such endpoint in the inbox"}, {"channel": "unknown",
                                                                  "recipient": path}

    def _answer(self, status: int, answer) -> None:
        text = answer if isinstance(answer, str) else json.dumps(answer)
        data = text.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(answer, str)
                             else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting

    do_GET = do_POST = do_PUT = do_PATCH = _handle


def _json(raw: bytes):
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


# --- SMTP (aiosmtpd, imported only here) ---

class MailHandler:
    """Records each mail; refuses recipients at ``refused.example`` (for partial refusals)."""

    def __init__(self, recorder: Recorder, server: str) -> None:
        self.recorder = recorder
        self.server = server

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower().endswith("@refused.example"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes, policy

        message = message_from_bytes(envelope.original_content or envelope.content,
                                     policy=policy.default)
        plain = message.get_body(preferencelist=("plain",))
        auth = getattr(session, "auth_data", None)
        self.recorder.record(
            channel="email", server=self.server, method="SMTP", answered=250,
            recipient=list(envelope.rcpt_tos), sender=envelope.mail_from,
            subject=str(message.get("Subject", "")), message_id=message.get("Message-ID"),
            text=plain.get_content() if plain is not None else "",
            html=message.get_body(preferencelist=("html",)) is not None,
            tls=session.ssl is not None or self.server == "implicit",
            auth_user=auth.login.decode() if hasattr(auth, "login") else None)
        return "250 Message accepted for delivery"


def _authenticator(user: str, password: str):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(server, session, envelope, mechanism, auth_data):
        if (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == user
                and auth_data.password.decode() == password):
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)  # handled=True would hang the client

    return check


def _tls_context(config: dict):
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config["cert"], config["key"])
    return context


def smtp_controllers(config: dict, recorder: Recorder) -> list:
    """The three SMTP servers: STARTTLS + AUTH, implicit TLS + AUTH, plain (no TLS, no AUTH)."""
    import logging
    import warnings

    from aiosmtpd.controller import Controller

    # aiosmtpd cannot see that an implicit-TLS session is encrypted, so that server must
    # allow AUTH "without TLS" — and says so on every connection; and it warns about its
    # own deprecated login_data. Neither is news to a lab.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    warnings.filterwarnings("ignore", message="Session.login_data is deprecated")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    ports, auth = config["smtp_ports"], _authenticator(config["smtp_user"],
                                                       config["smtp_password"])
    tls = _tls_context(config)
    return [
        Controller(MailHandler(recorder, "starttls"), hostname="127.0.0.1",
                   port=ports["starttls"], tls_context=tls, require_starttls=True,
                   authenticator=auth, auth_required=True),
        Controller(MailHandler(recorder, "implicit"), hostname="127.0.0.1",
                   port=ports["implicit"], ssl_context=tls, authenticator=auth,
                   auth_require_tls=False),  # aiosmtpd cannot tell implicit TLS is TLS
        Controller(MailHandler(recorder, "plain"), hostname="127.0.0.1", port=ports["plain"]),
    ]


class Inbox:
    """Every inbox server for one config, started and stopped together (threads)."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.recorder = Recorder(config["records"])
        self.services = Services(config, self.recorder)
        handler = type("InboxHandler", (Handler,), {"services": self.services})
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", config["http_port"]), handler)
        self.http.daemon_threads = True  # a delayed answer must not hold up the teardown
        self.smtp = smtp_controllers(config, self.recorder)
        self._thread: threading.Thread | None = None

    def start(self) -> "Inbox":
        self._thread = threading.Thread(target=self.http.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        started = []
        try:
            for controller in self.smtp:
                controller.start()
                started.append(controller)
        except BaseException:
            for controller in started:
                controller.stop()
            self.http.shutdown()
            raise
        return self

    def stop(self) -> None:
        for controller in self.smtp:
            try:
                controller.stop()
            except Exception:  # stopping one server must not leave the others running
                pass
        self.http.shutdown()
        self.http.server_close()
