"""How ``runbook drill`` shows its verdicts: one block per playbook, or JSON lines."""
from __future__ import annotations

import json
from dataclasses import asdict

import click

from engine.durations import format_duration


def show_results(results, output: str) -> None:
    if output == "json":
        for result in results:
            click.echo(json.dumps(asdict(result), default=str))
        return
    for result in results:
        click.echo(_block(result))
    passed = sum(1 for r in results if r.ok)
    click.echo(f"\nDrills: {passed} passed, {len(results) - passed} failed")


def _block(result) -> str:
    verdict = "PASSED" if result.ok else "FAILED"
    lines = [f"\ndrill {result.playbook}: {verdict} ({result.drill_id})"]
    if result.dry_run_id:
        lab = "lab unchanged" if not result.lab_changes else f"{len(result.lab_changes)} lab change(s)"
        lines.append(f"  rehearsal {result.dry_run_id}: {len(result.findings)} finding(s), "
                     f"{len(result.planned)} planned change(s), {lab}")
    if result.run_id:
        lines.append(f"  real run {result.run_id}: {result.status} in "
                     f"{format_duration(result.measured)}{_estimate(result)}{_rto(result)}")
        same = result.executed == [p.lstrip("?") for p in result.planned]
        lines.append(f"  planned vs executed changes: {len(result.executed)} executed"
                     + (", exactly as planned" if same else ""))
    lines += [f"  ✗ {problem}" for problem in result.problems]
    return "\n".join(lines)


def _estimate(result) -> str:
    if result.estimate is None or not result.measured:
        return ""
    low, high = result.estimate_low or result.estimate, result.estimate
    shown = format_duration(high) if low == high else f"{format_duration(low)}–{format_duration(high)}"
    return f" (estimated {shown}, ×{high / result.measured:.1f})"


def _rto(result) -> str:
    if not result.rto or result.measured is None:
        return ""
    verdict = "within" if result.measured <= result.rto else "MISSED"
    return f"; RTO {format_duration(result.rto)} {verdict}"
