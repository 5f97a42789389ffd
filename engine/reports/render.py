"""Rendering reports: Jinja2 templates (``engine/reports/templates``) for HTML, Markdown and
the post-mortem draft; JSON as is; JUnit XML through ElementTree (it escapes for us).
"""
from __future__ import annotations

import json
from functools import lru_cache
from xml.etree import ElementTree as ET

from engine.durations import format_duration

FORMATS = ("md", "html", "json", "junit", "postmortem")
_TEMPLATES = {"md": "report.md.j2", "html": "report.html.j2", "postmortem": "postmortem.md.j2"}


@lru_cache(maxsize=1)
def environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("engine.reports", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "html.j2"]),
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(dur=format_duration, clock=clock, day=day, cell=cell, yaml=as_yaml,
                       oneline=oneline,
                       tojson_pretty=lambda value: json.dumps(value, indent=2,
                                                              ensure_ascii=False, default=str))
    return env


def render(report: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n"
    if fmt == "junit":
        return junit(report)
    if fmt == "postmortem":
        from engine.reports.postmortem import facts

        return render_template(_TEMPLATES[fmt], report=report, pm=facts(report))
    return render_template(_TEMPLATES[fmt], report=report)


def render_template(template: str, **values) -> str:
    return environment().get_template(template).render(**values)


def clock(ts: str | None) -> str:
    """``2026-12-01T03:59:17.572Z`` -> ``03:59:17`` (the report's header gives the date)."""
    return ts[11:19] if ts and len(ts) >= 19 else (ts or "")


def day(ts: str | None) -> str:
    return ts[:10] if ts else ""


def cell(text) -> str:
    """One Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text if text is not None else "").split()).replace("|", "\\|")


def as_yaml(value) -> str:
    import yaml

    if value is None:
        return ""
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False, allow_unicode=True,
                          width=88).rstrip()


def oneline(value, limit: int = 160) -> str:
    """Arguments on one line (YAML flow style), cut with an ellipsis when long."""
    import yaml

    if value is None:
        return ""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000,
                          allow_unicode=True).strip()
    text = text[:-4].strip() if text.endswith("\n...") else text.removesuffix("...").strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"


def junit(report: dict) -> str:
    """One testcase per step. ``ignore_errors`` steps pass (the run went on, as designed);
    a finding of a dry-run and a step in doubt fail; planned and skipped steps are skipped."""
    run = report["run"]
    steps = report["steps"]
    failing = [s for s in steps if _fails(s)]
    suite = ET.Element("testsuite", name=run["runbook"], tests=str(len(steps)),
                       failures=str(len(failing)),
                       skipped=str(sum(s["status"] in ("skipped", "planned", "waiting")
                                       for s in steps)),
                       time=str(run["duration"] or 0), id=run["run_id"])
    for step in steps:
        case = ET.SubElement(suite, "testcase", classname=run["runbook"], name=step["name"],
                             time=str(step["duration"] or 0))
        if _fails(step):
            ET.SubElement(case, "failure", message=step["message"] or step["status"])
        elif step["status"] in ("skipped", "planned", "waiting"):
            ET.SubElement(case, "skipped", message=step["message"] or step["plan"]
                          or step["status"])
        elif step["status"] == "failed (ignored)":
            out = ET.SubElement(case, "system-out")
            out.text = f"failed, ignored (ignore_errors): {step['message']}"
    suites = ET.Element("testsuites")
    suites.append(suite)
    return ET.tostring(suites, encoding="unicode") + "\n"


def _fails(step: dict) -> bool:
    return step["status"] in ("failed", "finding", "in doubt")
