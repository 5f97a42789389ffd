"""``runbook drill``: automated DR testing of runbooks themselves.

For each playbook that declares ``drill:``, against a fresh lab: take the drill's set-up
runs, rehearse the playbook (``--dry-run --strict``) and run it for real with scripted
answers, then compare — the mutating steps the rehearsal planned with those the real run
executed, the lab before and after the rehearsal (nothing may change), the estimate with
the measured time, the achieved time with the RTO. The verdict and the figures are written
as a drill record; any mismatch fails the drill.
"""
from __future__ import annotations

import json
import secrets as pysecrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from engine.errors import EngineError, UsageError
from engine.journal import events as ev
from engine.journal.replay import step_key
from engine.run.options import RunOptions
from engine.run.prepare import RunRequest
from engine.run.start import start_run
from engine.run.values import restored_value
from engine.templating import Templar, TemplateFailure


@dataclass
class DrillResult:
    playbook: str
    drill_id: str
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    dry_run_id: str | None = None
    run_id: str | None = None
    findings: list[dict] = field(default_factory=list)
    planned: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    lab_changes: list[str] = field(default_factory=list)
    estimate: float | None = None
    estimate_low: float | None = None
    measured: float | None = None
    rto: float | None = None
    status: str | None = None

    def fail(self, problem: str) -> None:
        self.ok = False
        self.problems.append(problem)


@dataclass(frozen=True)
class DrillRequest:
    playbooks: list[str]
    lab_dir: str
    state_dir: str | None = None
    state_url: str | None = None
    operator: str | None = None


def drill_playbooks(request: DrillRequest, progress=lambda message: None) -> list[DrillResult]:
    """Drill each playbook (a directory: every runbook in it that declares ``drill:``)."""
    results = []
    for path in expand(request.playbooks):
        progress(f"drill {path}")
        results.append(drill_one(path, request, progress))
    return results


def expand(paths: list[str]) -> list[str]:
    """Files as given; directories walked for runbooks (YAML mappings with ``steps:``)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            for candidate in sorted(path.rglob("*.y*ml")):
                data = _yaml(candidate)
                if isinstance(data, dict) and "steps" in data:
                    found.append(str(candidate))
        else:
            found.append(str(path))
    if not found:
        raise UsageError(f"no runbooks in {', '.join(paths)}")
    return found


def drill_one(path: str, request: DrillRequest, progress) -> DrillResult:
    """One playbook's drill; a problem with the playbook itself fails its drill only."""
    result = DrillResult(path, new_drill_id())
    try:
        _drill(path, request, progress, result)
    except EngineError as exc:
        result.fail(exc.render().removeprefix("error: "))
    record(result, request)
    return result


def _drill(path: str, request: DrillRequest, progress, result: DrillResult) -> None:
    from engine.lab.sandbox import lab_up

    data = _yaml(Path(path))
    spec = data.get("drill") if isinstance(data, dict) else None
    if not isinstance(spec, dict):
        result.fail("the playbook declares no drill: (lab parts, inputs, answers)")
        return
    # The runbook is validated by the runs themselves, with the lab inventory's names known.
    lab = lab_up(Path(request.lab_dir), list(spec.get("lab") or []), progress=progress)
    context = {"lab": _lab_scope(lab), "setup": _run_setup(path, spec, lab, request, result)}
    if not result.ok:
        return
    extra = [json.dumps(_render(spec.get("inputs") or {}, context, result))]
    answers = _answers_file(spec, request, result)
    _rehearse(path, lab, extra, request, result, progress)
    _run_for_real(path, lab, extra, answers, request, result, progress)
    _compare(result)


# --- the three runs ---

def _run_setup(path, spec, lab, request, result) -> list[dict]:
    """The drill's set-up runbooks (e.g. take the backup a restore drill restores)."""
    outputs = []
    for entry in spec.get("setup") or []:
        setup_path = str((Path(path).parent / entry["runbook"]).resolve())
        inputs = _render(entry.get("inputs") or {}, {"lab": _lab_scope(lab)}, result)
        handle, events = _start(setup_path, lab, [json.dumps(inputs)], request, RunOptions(),
                                drill=result.drill_id)
        if handle.outcome.status != "completed":
            result.fail(f"set-up {entry['runbook']} ended {handle.outcome.status.value}: "
                        f"{handle.outcome.message}")
        outputs.append(_registered(events))
    return outputs


def _rehearse(path, lab, extra, request, result, progress) -> None:
    from engine.lab.sandbox import lab_state
    from engine.lab.snapshot import differences, lab_snapshot

    before = lab_snapshot(lab_state(lab["dir"]))
    progress("rehearsal (--dry-run --strict)")
    handle, events = _start(path, lab, extra, request, RunOptions(dry_run=True, strict=True),
                            drill=result.drill_id)
    result.dry_run_id = handle.run_id
    result.rto = handle.runbook.rto
    result.findings = handle.outcome.findings
    end = run_end(events)
    result.estimate, result.estimate_low = end.get("estimate"), end.get("estimate_low")
    result.planned = planned_changes(events)
    result.lab_changes = differences(before, lab_snapshot(lab_state(lab["dir"])))
    if handle.outcome.findings:
        result.fail(f"the rehearsal has {len(handle.outcome.findings)} finding(s): "
                    + "; ".join(f"{f['name']}: {f['message']}" for f in handle.outcome.findings))
    if handle.outcome.status.value != "completed":
        result.fail(f"the rehearsal ended {handle.outcome.status.value}: {handle.outcome.message}")
    if result.lab_changes:
        result.fail("the rehearsal changed the lab: " + "; ".join(result.lab_changes[:10]))


def _run_for_real(path, lab, extra, answers, request, result, progress) -> None:
    progress("real run")
    handle, events = _start(path, lab, extra, request, RunOptions(), answers=answers,
                            drill=result.drill_id)
    result.run_id = handle.run_id
    result.status = handle.outcome.status.value
    result.executed = executed_changes(events)
    end = run_end(events)
    result.measured = end.get("elapsed")
    if result.status != "completed":
        result.fail(f"the real run ended {result.status}: {handle.outcome.message}")
    if end.get("rto_missed_by"):
        result.fail(f"the real run missed the RTO by {end['rto_missed_by']:.1f}s")


def _start(path, lab, extra, request, options, answers=None, drill=None):
    events: list = []
    run = RunRequest(runbook=path, inventories=[lab["inventory"]], extra=extra, options=options,
                     state_dir=request.state_dir, state_url=request.state_url,
                     operator=request.operator, answers=answers, drill=drill)
    return start_run(run, [events.append]), events


# --- comparing ---

def planned_changes(events) -> list[str]:
    """Mutating invocations the rehearsal planned; ``?`` marks one it may not run."""
    out = []
    for event in events:
        if event.type == ev.STEP_PLANNED and event.data.get("mutates"):
            mark = "?" if event.data.get("conditional") else ""
            out.append(mark + step_key(event.step))
    return out


def executed_changes(events) -> list[str]:
    """Mutating invocations the real run started (each once, retries folded)."""
    out: list[str] = []
    for event in events:
        if event.type == ev.STEP_STARTED and event.data.get("mutates"):
            key = step_key(event.step)
            if key not in out:
                out.append(key)
    return out


def run_end(events) -> dict:
    """The data of the event that ended the run (notifications may follow it)."""
    for event in reversed(events):
        if event.type in ev.RUN_ENDS:
            return event.data
    return {}


def _compare(result: DrillResult) -> None:
    """Every executed change was planned, in order; every unconditional plan was executed."""
    for problem in compare_changes(result.planned, result.executed):
        result.fail(problem)


def compare_changes(planned: list[str], executed: list[str]) -> list[str]:
    """What differs between planned and executed changes (nothing: the plan told the truth).
    A plan entry marked ``?`` (conditional) may or may not run; one without an item or
    target (a loop over a list only the run knows) covers every item the run executes."""
    required = [p for p in planned if not p.startswith("?")]
    every = [p.lstrip("?") for p in planned]
    unplanned = [e for e in executed if not any(covers(p, e) for p in every)]
    missing = [p for p in required if not any(covers(p, e) for e in executed)]
    problems = []
    if unplanned:
        problems.append("executed but not in the plan: " + ", ".join(unplanned))
    if missing:
        problems.append("planned but not executed: " + ", ".join(missing))
    if not unplanned and not missing and _order(required, executed) != required:
        problems.append(f"executed in another order than planned: {executed} vs {required}")
    return problems


def covers(plan: str, executed: str) -> bool:
    """Whether a plan entry stands for an executed invocation (``each`` covers ``each#2``)."""
    return executed == plan or executed.startswith(plan + "#") or executed.startswith(plan + "@")


def _order(required: list[str], executed: list[str]) -> list[str]:
    """The required plan entries in the order the run first executed them."""
    seen: list[str] = []
    for key in executed:
        for plan in required:
            if plan not in seen and covers(plan, key):
                seen.append(plan)
    return seen


# --- the record ---

def record(result: DrillResult, request: DrillRequest) -> Path:
    from engine.journal.file import default_state_dir

    directory = default_state_dir(request.state_dir) / "drills"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{result.drill_id}.json"
    path.write_text(json.dumps(asdict(result), indent=2, default=str) + "\n")
    return path


def new_drill_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"drill-{stamp}-{pysecrets.token_hex(2)}"


# --- helpers ---

def _lab_scope(lab: dict) -> dict:
    """What drill inputs may name: the lab inventory's vars and targets."""
    inventory = yaml.safe_load(Path(lab["inventory"]).read_text()) or {}
    targets = dict(inventory.get("targets") or {})
    for group in (inventory.get("groups") or {}).values():
        targets.update((group or {}).get("targets") or {})
    return {**(inventory.get("vars") or {}), "targets": targets, "dir": lab["dir"]}


def _registered(events) -> dict:
    """A run's results by step id, as ``register`` would expose them."""
    return {e.step["id"]: restored_value(e.data) for e in events
            if e.type == ev.STEP_SUCCEEDED and e.step and "item" not in e.step}


def _render(values: dict, scope: dict, result: DrillResult) -> dict:
    templar = Templar()
    try:
        return templar.render(values, scope)
    except TemplateFailure as exc:
        result.fail(f"drill inputs: {exc}")
        return {}


def _answers_file(spec: dict, request: DrillRequest, result: DrillResult) -> str | None:
    if not spec.get("answers"):
        return None
    from engine.journal.file import default_state_dir

    path = default_state_dir(request.state_dir) / "drills" / f"{result.drill_id}.answers.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec["answers"], sort_keys=False))
    return str(path)


def _yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
