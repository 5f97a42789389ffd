"""``runbook docs RUNBOOK``: the runbook as a printable markdown checklist (for the binder)."""
from __future__ import annotations

import yaml

from engine.durations import format_duration
from engine.source.model import Runbook, Step, StepKind


def runbook_markdown(runbook: Runbook) -> str:
    lines = [f"# {runbook.name}", ""]
    if runbook.description:
        lines += [runbook.description.strip(), ""]
    facts = [("Tier", runbook.tier), ("Owner", runbook.owner),
             ("RTO", format_duration(runbook.rto) if runbook.rto else ""),
             ("RPO", format_duration(runbook.rpo) if runbook.rpo else "")]
    lines += [f"- **{k}:** {v}" for k, v in facts if v] + [""]
    if runbook.inputs:
        lines += ["## Inputs", "", "| Name | Type | Required | Default | Description |",
                  "|---|---|---|---|---|"]
        for spec in runbook.inputs.values():
            default = "(secret)" if spec.secret else (spec.default if spec.has_default else "")
            lines.append(f"| `{spec.name}` | {spec.type} | {'yes' if spec.required else ''} | "
                         f"{default} | {spec.description} |")
        lines.append("")
    lines += ["## Steps", ""]
    counter = [0]
    for step in runbook.steps:
        lines += _step(step, counter, 0)
    return "\n".join(lines).rstrip() + "\n"


def _step(step: Step, counter: list, depth: int) -> list[str]:
    pad = "  " * depth
    if step.kind is not StepKind.ACTION:
        title = "In parallel" if step.kind is StepKind.PARALLEL else (step.name or "Block")
        lines = [f"{pad}- **{title}**" + (f" (when `{step.when}`)" if step.when else "")]
        for group, label in ((step.block, ""), (step.children, ""), (step.rescue, "If that fails:"),
                             (step.always, "Always:")):
            if group and label:
                lines.append(f"{pad}  - _{label}_")
            for child in group:
                lines += _step(child, counter, depth + 1)
        return lines
    counter[0] += 1
    meta = [f"`{step.action}`"]
    if step.expected_duration:
        meta.append(f"~{format_duration(step.expected_duration)}")
    if step.when is not None:
        meta.append(f"when `{step.when}`")
    if step.loop is not None:
        meta.append("for each item")
    lines = [f"{pad}- [ ] **{counter[0]}. {step.label}** — " + ", ".join(meta)]
    if step.description:
        lines += [f"{pad}  {line}" for line in step.description.strip().splitlines()]
    if step.action == "manual" and isinstance(step.args, dict):
        lines.append(f"{pad}  {step.args.get('instructions', '')}".rstrip())
        lines += [f"{pad}  - [ ] {item}" for item in step.args.get("checklist") or []]
    elif not step.no_log:
        args = yaml.safe_dump(step.args, default_flow_style=True, sort_keys=False, width=200).strip()
        lines.append(f"{pad}  `{args}`")
    lines += [f"{pad}  - verify: `{' and '.join(v.that)}`" for v in step.verify]
    if step.rollback:
        lines.append(f"{pad}  - rollback: " + "; ".join(r.label for r in step.rollback))
    return lines
