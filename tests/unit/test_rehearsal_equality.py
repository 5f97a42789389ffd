"""The rule a rehearsal lives by: for a deterministic runbook, the mutating steps the dry-run
plans are the ones the real run executes — same ids, targets and items, in order — with
unknowns in every position (arguments, filters, set_fact, loops, when, groups, parallel,
targets). A plan entry marked conditional may or may not run; every other must."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers.run import run_inprocess

from engine.run.drill import compare_changes, executed_changes, planned_changes

CORPUS = sorted((Path(__file__).resolve().parents[1] / "fixtures" / "rehearsal").glob("*.yaml"))
INVENTORY = "targets: {}\ngroups:\n  workers:\n    targets:\n      w1: {}\n      w2: {}\n"


@pytest.mark.parametrize("source", CORPUS, ids=lambda p: p.stem)
def test_the_plan_lists_exactly_the_changes_the_real_run_makes(source, tmp_path):
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(INVENTORY)
    work = tmp_path / "work"
    work.mkdir()
    extra = [json.dumps({"dir": str(work)})]
    text = source.read_text()
    text = text.replace("name: ", "inputs: {dir: {type: string, required: true}}\nname: ", 1)

    rehearsal = run_inprocess(tmp_path, text, extra=extra, inventories=[inventory], dry_run=True)
    assert rehearsal.status == "completed" and rehearsal.handle.outcome.findings == []
    assert list(work.iterdir()) == [], "a rehearsal changed nothing"
    real = run_inprocess(tmp_path, text, extra=extra, inventories=[inventory])
    assert real.status == "completed", real.handle.outcome.message

    planned = planned_changes(rehearsal.events)
    executed = executed_changes(real.events)
    assert executed, "the corpus makes changes"
    assert compare_changes(planned, executed) == [], (planned, executed)
    shutil.rmtree(work)
