"""``aws.route53_upsert``: set (or remove) one Route 53 record set, with ``previous``
for a rollback; and the engine's own check of a raw ``ChangeResourceRecordSets``
batch (AWS refuses CREATE of an existing record and DELETE of a missing or
different one; moto accepts both, so the engine checks it before sending)."""
from __future__ import annotations

from typing import Any

from engine.actions.aws.common import (poll, schema, seconds, service_touched, DURATION_PROP,
                                       WAIT_PROP)
from engine.actions.aws.model import is_templated
from engine.actions.base import Action, ActionError, Context, Result
from engine.connections.aws import call

RECORD_TYPES = ["A", "AAAA", "CAA", "CNAME", "DS", "MX", "NAPTR", "NS", "PTR", "SOA", "SPF",
                "SRV", "TXT"]
#: types whose values are domain names: compared without case or a final dot
NAME_VALUED = {"CNAME", "NS", "PTR"}
DEFAULT_TTL = 300


# --------------------------------------------------------------------------
# Names, zones and record sets
# --------------------------------------------------------------------------

def dns_name(name: str) -> str:
    """A DNS name as Route 53 compares it: lower case, no final dot, ``\\052`` as ``*``."""
    return str(name).replace("\\052", "*").rstrip(".").lower()


def find_zone(ctx: Context, zone: str, region: str | None) -> tuple[str, str]:
    """(zone id, zone name) for a zone id (``Z0123…``, ``/hostedzone/Z0123…``) or name."""
    if "." not in zone.rstrip("."):
        zone_id = zone.split("/")[-1]
        found = call(ctx, "route53", "GetHostedZone", {"Id": zone_id}, region=region)
        return zone_id, dns_name(found["HostedZone"]["Name"])
    wanted = dns_name(zone)
    listed = call(ctx, "route53", "ListHostedZonesByName", {"DNSName": wanted, "MaxItems": "100"},
                  region=region)
    matches = [z for z in listed.get("HostedZones", []) if dns_name(z["Name"]) == wanted]
    if not matches:
        raise ActionError(f"route53: no hosted zone named {wanted}")
    if len(matches) > 1:
        ids = ", ".join(f"{z['Id'].split('/')[-1]} "
                        f"({'private' if z.get('Config', {}).get('PrivateZone') else 'public'})"
                        for z in matches)
        raise ActionError(f"route53: {len(matches)} hosted zones are named {wanted} ({ids}): "
                          f"give the zone's id")
    return matches[0]["Id"].split("/")[-1], wanted


def current_record(ctx: Context, zone_id: str, name: str, rtype: str,
                   set_identifier: str | None, region: str | None) -> dict | None:
    """The record set ``name``/``rtype`` (and ``set_identifier``) as Route 53 has it, or None."""
    params: dict[str, Any] = {"HostedZoneId": zone_id, "StartRecordName": name,
                              "StartRecordType": rtype, "MaxItems": "100"}
    while True:
        page = call(ctx, "route53", "ListResourceRecordSets", params, region=region)
        for record in page.get("ResourceRecordSets", []):
            if dns_name(record["Name"]) != dns_name(name) or record["Type"] != rtype:
                continue
            if (record.get("SetIdentifier") or None) == (set_identifier or None):
                return record
        if not page.get("IsTruncated") or dns_name(page.get("NextRecordName", "")) != dns_name(name):
            return None
        params.update(StartRecordName=page["NextRecordName"],
                      StartRecordType=page.get("NextRecordType", rtype))
        if page.get("NextRecordIdentifier"):
            params["StartRecordIdentifier"] = page["NextRecordIdentifier"]


def canonical(record: dict | None) -> tuple | None:
    """What decides whether two record sets are the same (order of values aside)."""
    if record is None:
        return None
    norm = dns_name if record.get("Type") in NAME_VALUED else str
    values = tuple(sorted(norm(v["Value"]) for v in record.get("ResourceRecords", [])))
    alias = record.get("AliasTarget")
    alias_key = (dns_name(alias["DNSName"]), alias["HostedZoneId"].split("/")[-1],
                 bool(alias.get("EvaluateTargetHealth"))) if alias else None
    return (record.get("TTL"), values, alias_key, record.get("Failover"),
            record.get("HealthCheckId"))


def shown_values(record: dict) -> str:
    """``dr-lb.example.com`` or ``alias dualstack.lb… (zone Z…)`` for a plan line."""
    alias = record.get("AliasTarget")
    if alias:
        return f"alias {dns_name(alias['DNSName'])} (zone {alias['HostedZoneId'].split('/')[-1]})"
    values = [v["Value"] for v in record.get("ResourceRecords", [])]
    return ", ".join(values) if values else "(no values)"


# --------------------------------------------------------------------------
# The engine's own check of a ChangeResourceRecordSets batch
# --------------------------------------------------------------------------

def change_batch_problem(ctx: Context, params: dict, region: str | None) -> str | None:
    """Why AWS would refuse this batch (CREATE of an existing record, DELETE of a missing
    or different one), or None. Read-only look-ups only."""
    zone_id = str(params.get("HostedZoneId", "")).split("/")[-1]
    for change in (params.get("ChangeBatch") or {}).get("Changes", []):
        action, record = change.get("Action"), change.get("ResourceRecordSet") or {}
        if action not in ("CREATE", "DELETE") or not record.get("Name"):
            continue
        what = f"{action} {dns_name(record['Name'])} {record.get('Type')}"
        live = current_record(ctx, zone_id, record["Name"], record.get("Type", ""),
                              record.get("SetIdentifier"), region)
        if action == "CREATE" and live is not None:
            return (f"{what}: the record already exists ({shown_values(live)}); AWS rejects the "
                    f"batch with InvalidChangeBatch — use UPSERT")
        if action == "DELETE" and live is None:
            return f"{what}: no such record; AWS rejects the batch with InvalidChangeBatch"
        if action == "DELETE" and canonical(live) != canonical(record):
            return (f"{what}: the record differs from the live one ({shown_values(live)}, TTL "
                    f"{live.get('TTL')}); AWS deletes only an exact match (InvalidChangeBatch)")
    return None


# --------------------------------------------------------------------------
# The action
# --------------------------------------------------------------------------

_ALIAS = {"type": "object", "additionalProperties": False,
          "required": ["dns_name", "hosted_zone_id"],
          "properties": {"dns_name": {"type": "string", "minLength": 1},
                         "hosted_zone_id": {"type": "string", "minLength": 1},
                         "evaluate_target_health": {"type": "boolean"}}}


class Upsert(Action):
    """Point a Route 53 record at new values (UPSERT), or remove it; returns `previous` for rollback."""

    name = "aws.route53_upsert"
    mutates = True
    args_schema = schema({
        "zone": {"type": "string", "minLength": 1, "description": "hosted zone name or id"},
        "name": {"type": "string", "minLength": 1, "description": "record name (FQDN)"},
        "type": {"enum": RECORD_TYPES},
        "ttl": {"type": "integer", "minimum": 0, "maximum": 2147483647,
                "description": "seconds (default: the record's current TTL, else 300)"},
        "values": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
        "alias": _ALIAS,
        "set_identifier": {"type": "string", "minLength": 1},
        "failover": {"enum": ["PRIMARY", "SECONDARY"]},
        "health_check_id": {"type": "string", "minLength": 1},
        "state": {"enum": ["present", "absent"], "description": "absent: delete the record"},
        "wait": {**WAIT_PROP, "description": "wait until the change is INSYNC (default true)"},
        "timeout": {**DURATION_PROP, "description": "how long to wait for INSYNC (default 5m)"},
    }, ["zone", "name", "type"])

    @classmethod
    def literal_arg_errors(cls, args: Any):
        return [((key,), message) for key, message in _shape_problems(args)]

    def touches(self, args: dict, ctx: Context) -> set[str]:
        return service_touched(ctx, "route53")

    def plan(self, args: dict, ctx: Context) -> str:
        _check(args)
        zone_id, zone_name, live, wanted = _look(args, ctx)
        label = _label(args)
        if wanted is None:
            if live is None:
                return f"no change: {label} does not exist"
            return f"delete {label} {shown_values(live)} (TTL {live.get('TTL')})"
        if canonical(live) == canonical(wanted):
            return f"no change: {label} already {shown_values(live)} (TTL {live.get('TTL')})"
        if live is None:
            return f"create {label} {shown_values(wanted)} (TTL {wanted.get('TTL')})"
        return f"{label} {_difference(live, wanted)}"

    def run(self, args: dict, ctx: Context) -> Result:
        _check(args)
        region = args.get("region")
        zone_id, zone_name, live, wanted = _look(args, ctx)
        data = {"zone_id": zone_id, "previous": _as_args(live, args, zone_id),
                "record": wanted, "existed": live is not None}
        label = _label(args)
        if canonical(live) == canonical(wanted):
            state = "does not exist" if wanted is None else f"already {shown_values(wanted)}"
            return Result(ok=True, changed=False, data=data, message=f"no change: {label} {state}")
        action, record = ("DELETE", live) if wanted is None else ("UPSERT", wanted)
        batch = {"Comment": f"runbook {ctx.run_id}".strip(),
                 "Changes": [{"Action": action, "ResourceRecordSet": record}]}
        info = call(ctx, "route53", "ChangeResourceRecordSets",
                    {"HostedZoneId": zone_id, "ChangeBatch": batch}, region=region)["ChangeInfo"]
        status = info["Status"]
        if args.get("wait", True) and status != "INSYNC":
            status = _wait_insync(ctx, info["Id"], args)
        data.update(change_id=info["Id"].split("/")[-1], status=status)
        done = "deleted" if action == "DELETE" else f"→ {shown_values(wanted)}"
        return Result(ok=True, changed=True, data=data, message=f"{label} {done} ({status})")


def _shape_problems(args: dict):
    """Combinations JSON Schema would explain badly; checked on literal and rendered args."""
    present = args.get("state", "present") == "present"
    if present and "values" not in args and "alias" not in args and not is_templated(args):
        yield "values", "give 'values' (a list) or 'alias' for state: present"
    if "values" in args and "alias" in args:
        yield "alias", "give either 'values' or 'alias', not both"
    if "alias" in args and "ttl" in args:
        yield "ttl", "an alias record has no TTL (Route 53 uses the target's)"
    if "failover" in args and "set_identifier" not in args:
        yield "failover", "a failover record needs a 'set_identifier'"


def _check(args: dict) -> None:
    for _key, message in _shape_problems(args):
        raise ActionError(message)


def _label(args: dict) -> str:
    ident = f" [{args['set_identifier']}]" if args.get("set_identifier") else ""
    return f"{dns_name(args['name'])} {args['type']}{ident}"


def _look(args: dict, ctx: Context):
    """(zone id, zone name, the live record or None, the wanted record or None)."""
    region = args.get("region")
    zone_id, zone_name = find_zone(ctx, args["zone"], region)
    name = dns_name(args["name"])
    if name != zone_name and not name.endswith("." + zone_name):
        raise ActionError(f"route53: {name} is not in zone {zone_name}")
    live = current_record(ctx, zone_id, name, args["type"], args.get("set_identifier"), region)
    return zone_id, zone_name, live, _wanted(args, live)


def _wanted(args: dict, live: dict | None) -> dict | None:
    """The ResourceRecordSet the change sends (None for state: absent)."""
    if args.get("state", "present") == "absent":
        return None
    record: dict[str, Any] = {"Name": dns_name(args["name"]) + ".", "Type": args["type"]}
    for key, field in (("set_identifier", "SetIdentifier"), ("failover", "Failover"),
                       ("health_check_id", "HealthCheckId")):
        if args.get(key):
            record[field] = args[key]
    if "alias" in args:
        alias = args["alias"]
        record["AliasTarget"] = {"DNSName": alias["dns_name"],
                                 "HostedZoneId": alias["hosted_zone_id"],
                                 "EvaluateTargetHealth": bool(alias.get("evaluate_target_health"))}
        return record
    record["TTL"] = args.get("ttl", (live or {}).get("TTL", DEFAULT_TTL))
    record["ResourceRecords"] = [{"Value": v} for v in args["values"]]
    return record


def _difference(live: dict, wanted: dict) -> str:
    """``primary-lb → dr-lb (TTL 60)``, plus failover and health-check changes."""
    before, after = shown_values(live), shown_values(wanted)
    text = f"{before} → {after}" if before != after else f"{after}"
    ttl_before, ttl_after = live.get("TTL"), wanted.get("TTL")
    if ttl_after is not None:
        text += f" (TTL {ttl_after})" if ttl_before == ttl_after else f" (TTL {ttl_before}→{ttl_after})"
    for key, label in (("Failover", "failover"), ("HealthCheckId", "health check")):
        if live.get(key) != wanted.get(key):
            text += f", {label} {live.get(key) or 'none'}→{wanted.get(key) or 'none'}"
    return text


def _as_args(record: dict | None, args: dict, zone_id: str) -> dict:
    """Arguments of this action that put ``record`` back (for ``rollback:``)."""
    back: dict[str, Any] = {"zone": zone_id, "name": dns_name(args["name"]), "type": args["type"]}
    if args.get("region"):
        back["region"] = args["region"]
    if args.get("set_identifier"):
        back["set_identifier"] = args["set_identifier"]
    if record is None:
        return {**back, "state": "absent"}
    if record.get("AliasTarget"):
        alias = record["AliasTarget"]
        back["alias"] = {"dns_name": alias["DNSName"], "hosted_zone_id": alias["HostedZoneId"],
                         "evaluate_target_health": bool(alias.get("EvaluateTargetHealth"))}
    else:
        back["ttl"] = record.get("TTL", DEFAULT_TTL)
        back["values"] = [v["Value"] for v in record.get("ResourceRecords", [])]
    for field, key in (("Failover", "failover"), ("HealthCheckId", "health_check_id")):
        if record.get(field):
            back[key] = record[field]
    return back


def _wait_insync(ctx: Context, change_id: str, args: dict) -> str:
    def probe() -> tuple[bool, str]:
        status = call(ctx, "route53", "GetChange", {"Id": change_id},
                      region=args.get("region"))["ChangeInfo"]["Status"]
        return status == "INSYNC", status

    return poll(ctx, probe, timeout=seconds(args.get("timeout"), 300), delay=5,
                what=f"route53 change {change_id.split('/')[-1]}")
