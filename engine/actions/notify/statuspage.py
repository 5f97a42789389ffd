"""``notify.statuspage``: Statuspage (v1 API) incidents and component statuses.

Target settings ``statuspage: {api_base, page_id, api_key}``; the API key is a
secret (sent as ``Authorization: OAuth KEY``). Components are named as people
see them ("API", "Database"); their ids are looked up on the page (a
read-only look-up, which the plan does too, so a misspelt component is caught
by a rehearsal). The result keeps the statuses before the change
(``previous``) for a rollback.
"""
from __future__ import annotations

from engine.actions.base import ActionError, Context, Result
from engine.actions.notify.common import (COMMON_ARGS, Delivery, NotifyAction, http_error,
                                          preview, require)

DEFAULT_API = "https://api.statuspage.io/v1"
INCIDENT_STATUSES = ("investigating", "identified", "monitoring", "resolved",
                     "scheduled", "in_progress", "verifying", "completed")
COMPONENT_STATUSES = ("operational", "degraded_performance", "partial_outage", "major_outage",
                      "under_maintenance")
MAX_NAME = 255


class Statuspage(NotifyAction):
    """Open, update or resolve a Statuspage incident; set component statuses by name."""

    name = "notify.statuspage"
    channel = "statuspage"
    secret_settings = ("api_key",)
    args_schema = {
        "type": "object", "additionalProperties": False,
        "not": {"required": ["body", "message"]},
        "properties": {
            "action": {"enum": ["create", "update", "resolve", "components"],
                       "description": "Default: update with `incident`, else create."},
            "incident": {"type": ["string", "object"],
                         "description": "Incident id, or an earlier statuspage step's result."},
            "name": {"type": "string", "description": "Incident title (create; default: the "
                                                      "message's subject)."},
            "status": {"enum": list(INCIDENT_STATUSES),
                       "description": "Incident status (create: investigating)."},
            "body": {"type": "string", "description": "The update shown on the page."},
            "components": {"type": "object", "additionalProperties": {"enum": list(
                COMPONENT_STATUSES)}, "description": "Component name → status."},
            "impact_override": {"enum": ["none", "minor", "major", "critical"]},
            "deliver_notifications": {"type": "boolean",
                                      "description": "Tell the page's subscribers (default true)."},
            **COMMON_ARGS,
        },
    }

    def prepare(self, args: dict, ctx: Context) -> Delivery:
        settings = self.settings(ctx)
        api = _Api(settings, self.timeout(args, settings), ctx, self.where(ctx))
        incident = _incident_id(args.get("incident"))
        action = args.get("action") or ("update" if incident else "create")
        rendered = self.rendered(args, ctx)
        body = args.get("body") or (rendered.text if rendered else None)
        components = api.components(args.get("components") or {})
        if action == "components":
            return self._components_only(api, components)
        if action != "create" and not incident:
            raise ActionError(f"notify.statuspage: {action} needs 'incident' (its id, or the "
                              "registered result of the step that created it)")
        return self._incident(api, args, action, incident, body, components, rendered)

    def _incident(self, api, args, action, incident, body, components, rendered) -> Delivery:
        current = api.incident(incident) if incident else {}
        status = "resolved" if action == "resolve" else args.get("status") or (
            "investigating" if action == "create" else None)
        name = args.get("name") or (rendered.subject if rendered and action == "create" else None)
        if action == "create":
            _check_name(name)
        fields = {k: v for k, v in {"name": name, "status": status, "body": body,
                                    "impact_override": args.get("impact_override"),
                                    "deliver_notifications": args.get("deliver_notifications",
                                                                      True)}.items()
                  if v is not None}
        if components:
            fields["component_ids"] = [c["id"] for c in components.values()]
            fields["components"] = {c["id"]: c["to"] for c in components.values()}
        title = name or current.get("name", "")
        line = f"statuspage {action} incident" + (f" {incident}" if incident else "")
        line += f" {preview(title)}" if title else ""
        line += f": {current['status']} → {status}" if current and status else (
            f" ({status})" if status else "")
        line += _components_text(components) + (f": {preview(body)}" if body else "")
        return Delivery(line, {"incident": fields}, {
            "api": api, "action": action, "incident": incident, "components": components,
            "previous": current.get("status")})

    def _components_only(self, api, components: dict) -> Delivery:
        if not components:
            raise ActionError("notify.statuspage: action components needs 'components' "
                              "(name → status)")
        return Delivery("statuspage" + _components_text(components), None,
                        {"api": api, "action": "components", "components": components})

    def deliver(self, delivery: Delivery, ctx: Context) -> Result:
        details = delivery.details
        api, components = details["api"], details["components"]
        previous = {"components": {n: c["from"] for n, c in components.items()}}
        if details["action"] == "components":
            for component in components.values():
                api.call("PATCH", f"/components/{component['id']}",
                         {"component": {"status": component["to"]}})
            return Result(ok=True, changed=True, message=_components_text(components)[2:], data={"components": {n: c["to"] for n, c in components.items()},
                                   "previous": previous})
        if details["action"] == "create":
            incident = api.call("POST", "/incidents", delivery.payload)
        else:
            incident = api.call("PATCH", f"/incidents/{details['incident']}", delivery.payload)
            previous["status"] = details["previous"]
        data = {"incident_id": incident.get("id") or details["incident"],
                "name": incident.get("name"), "status": incident.get("status"),
                "shortlink": incident.get("shortlink"),
                "components": {n: c["to"] for n, c in components.items()}, "previous": previous}
        return Result(ok=True, changed=True, data=data,
                      message=f"incident {data['incident_id']} {data['status']}")


class _Api:
    """The page's API with the step's settings; every failure an ActionError."""

    def __init__(self, settings: dict, timeout: float, ctx: Context, where: str) -> None:
        self.base = (settings.get("api_base") or DEFAULT_API).rstrip("/")
        self.page = str(require(settings, "page_id", where))
        self.key = str(require(settings, "api_key", where))
        self.settings, self.timeout, self.ctx, self.where = settings, timeout, ctx, where

    def call(self, method: str, path: str, payload=None):
        from engine.connections.http import HttpFailure, Request, send

        request = Request(method, f"{self.base}/pages/{self.page}{path}",
                          f"statuspage {method} {path} ({self.where})", payload,
                          {"Authorization": f"OAuth {self.key}"}, self.timeout,
                          self.settings.get("ca_file"), [self.key],
                          idempotent=method == "GET", deadline=self.ctx.deadline)
        try:
            answer = send(request)
        except HttpFailure as exc:
            raise http_error(exc) from None
        body = answer.json()
        if body is None:
            raise ActionError(f"statuspage {method} {path}: the answer is not JSON")
        return body

    def incident(self, incident_id: str) -> dict:
        return self.call("GET", f"/incidents/{incident_id}")

    def components(self, wanted: dict) -> dict:
        """``{name: {id, from, to}}`` for the wanted ``{name: status}``, ids from the page."""
        if not wanted:
            return {}
        listed = self.call("GET", "/components")
        by_name = {c.get("name"): c for c in listed if isinstance(c, dict)} \
            if isinstance(listed, list) else {}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise ActionError(f"statuspage page {self.page} has no component "
                              f"{', '.join(repr(m) for m in missing)} (it has: "
                              f"{', '.join(sorted(map(str, by_name))) or 'none'})")
        return {n: {"id": by_name[n]["id"], "from": by_name[n].get("status"), "to": status}
                for n, status in wanted.items()}


def _incident_id(value) -> str | None:
    if isinstance(value, dict):
        value = value.get("incident_id") or value.get("id")
        if not value:
            raise ActionError("notify.statuspage: 'incident' has no incident_id (was it the "
                              "result of a statuspage step that created one?)")
    return str(value) if value else None


def _check_name(name) -> None:
    if not name or not str(name).strip():
        raise ActionError("notify.statuspage: a new incident needs a 'name' (or a message "
                          "with a subject)")
    if len(name) > MAX_NAME:
        raise ActionError(f"notify.statuspage: the incident name has {len(name)} characters "
                          f"(at most {MAX_NAME})")


def _components_text(components: dict) -> str:
    if not components:
        return ""
    parts = []
    for name, c in components.items():
        change = f"{c['from']} → {c['to']}" if c["from"] != c["to"] else f"{c['to']} (no change)"
        parts.append(f"{name} {change}")
    return ", components " + ", ".join(parts)
