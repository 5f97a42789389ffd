"""The operator's side of a run: step mode, manual steps and approvals.

The guide asks (on a terminal) or reads scripted answers (``--answers``), and
records every decision as a journal event with the operator's name. Without a
terminal and without an answer it pauses the run (exit 3); ``runbook resume``
continues it, possibly by another operator on another machine.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.journal import events as ev
from engine.control import ApprovalTimeout, Decision, RollbackRequested, RunAborted, RunPaused
from engine.errors import UsageError
from engine.durations import format_duration
from engine.timestamps import age

HELP = """\
  y  run this step          s  skip it (asks for a reason)
  a  abort the run          c  continue without asking again
  n  add a note to the journal
  ?  this help"""

FAILURE_HELP = """\
  r  retry the step         s  skip it (asks for a reason)
  a  abort the run          b  roll back the completed steps
  n  add a note to the journal"""

ANSWER_WORDS = {"yes": Decision.RUN, "y": Decision.RUN, "run": Decision.RUN,
                "skip": Decision.SKIP, "s": Decision.SKIP, "abort": Decision.ABORT,
                "a": Decision.ABORT}
FAILURE_WORDS = {"retry": Decision.RETRY, "r": Decision.RETRY, "skip": Decision.SKIP,
                 "s": Decision.SKIP, "abort": Decision.ABORT, "a": Decision.ABORT,
                 "rollback": Decision.ROLLBACK, "b": Decision.ROLLBACK}


class Terminal:
    """Line-based prompts on the process's own terminal."""

    def __init__(self, stdin=None, stdout=None) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self._console = None
        if self.stdout.isatty():
            from rich.console import Console

            self._console = Console(file=self.stdout, highlight=False)

    def show(self, text: str, style: str | None = None) -> None:
        if self._console is not None and style:
            self._console.print(text, style=style, markup=False, soft_wrap=True)
            return
        self.stdout.write(text + "\n")
        self.stdout.flush()

    @property
    def width(self) -> int:
        import shutil

        return shutil.get_terminal_size((100, 24)).columns if self._console else 100

    def markdown(self, text: str) -> None:
        if self._console is not None:
            from rich.markdown import Markdown

            self._console.print(Markdown(text))
        else:
            self.show(text)

    def ask(self, prompt: str) -> str:
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            raise RunPaused("the operator's terminal closed (end of input)")
        return line.strip()


def args_lines(args: Any, width: int) -> list[str]:
    """Step mode's arguments: YAML (already masked), long values wrapped at word boundaries."""
    import yaml

    if args in (None, {}, []):
        return []
    if isinstance(args, str):
        return [f"            {line}" for line in wrapped(args, width, 12)]
    text = yaml.safe_dump(args, default_flow_style=False, sort_keys=False,
                          allow_unicode=True, width=10_000).rstrip()
    lines = []
    for line in text.splitlines():
        indent = 12 + len(line) - len(line.lstrip())
        for index, part in enumerate(wrapped(line.strip(), width, indent)):
            lines.append(" " * (indent + (2 if index else 0)) + part)
    return lines


def wrapped(text: str, width: int, indent: int) -> list[str]:
    import textwrap

    return textwrap.wrap(str(text), max(width - indent - 2, 20), break_long_words=False,
                         break_on_hyphens=False) or [""]


def load_answers(path: str | None) -> dict | None:
    """Scripted replies: ``STEP_ID: yes|skip|abort`` or a mapping (see README)."""
    if not path:
        return None
    from engine.source.loader import load_file

    doc = load_file(path)
    if not isinstance(doc.data, dict):
        raise UsageError(f"{path}: answers must be a mapping of step ids to replies")
    for key, value in doc.data.items():
        word = value.get("answer", "yes") if isinstance(value, dict) else value
        if word is True:  # YAML reads a bare yes as true
            doc.data[key] = word = "yes"
        if str(word).lower() not in ANSWER_WORDS:
            raise doc.error((key,), f"answer for '{key}' must be yes, skip, abort or a mapping")
    return doc.data


@dataclass
class StepPreview:
    index: int
    total: int
    action: str
    args: Any
    plan: str
    expected: float | None
    remaining_expected: float


@dataclass
class Guide:
    events: list  # the journal's events (read-only here)
    #: records an operator event, redacted and journaled like every other (the run's emit)
    emit: Callable[..., Any] | None = None
    step_mode: bool = False
    answers: dict | None = None
    terminal: Terminal | None = None
    rto: float | None = None
    run_started: float = field(default_factory=time.time)
    continue_all: bool = False

    # --- step mode ---
    def before_step(self, step, ref: dict, preview: StepPreview) -> Decision:
        """RUN or SKIP (an abort raises RunAborted, a missing operator RunPaused)."""
        if not self.step_mode or self.continue_all:
            return Decision.RUN
        answer = self._scripted(step.id)
        if answer is not None:
            return self._scripted_decision(step, ref, answer)
        terminal = self._terminal(step, "confirmation")
        self._show_header(step, preview)
        while True:
            reply = terminal.ask("Run this step? [y/s/a/c/n/?] ").lower()
            if reply in ("y", "yes", "c"):
                self.continue_all = reply == "c"
                self.emit(ev.OPERATOR_CONFIRMED, ref, {"answer": "continue" if reply == "c" else "yes"})
                return Decision.RUN
            if reply in ("s", "skip"):
                return self._skip(ref, terminal.ask("Reason for skipping: "))
            if reply in ("a", "abort"):
                raise RunAborted(f"aborted by the operator at '{step.label}'")
            if reply in ("n", "note"):
                self._note(ref, terminal)
                continue
            terminal.show(HELP)

    def after_failure(self, step, ref: dict, message: str) -> Decision | None:
        """RETRY or SKIP — or None outside step mode (an abort or a rollback raises)."""
        if not self.step_mode:
            return None
        answer = self._scripted(step.id)
        if isinstance(answer, dict) and answer.get("on_failure"):
            decision = FAILURE_WORDS.get(str(answer["on_failure"]))
            if decision:
                self.emit(ev.OPERATOR_DECIDED, ref, {"decision": decision, "scripted": True})
                return self._apply_failure_decision(step, ref, decision, "scripted")
        if self.terminal is None:
            return None
        terminal = self.terminal
        terminal.show(f"FAILED — {message}")
        while True:
            reply = terminal.ask("What now? [r/s/a/b/n] ").lower()
            decision = FAILURE_WORDS.get(reply)
            if decision is Decision.SKIP:
                return self._skip(ref, terminal.ask("Reason for skipping: "))
            if decision:
                self.emit(ev.OPERATOR_DECIDED, ref, {"decision": decision})
                return self._apply_failure_decision(step, ref, decision, "")
            if reply in ("n", "note"):
                self._note(ref, terminal)
                continue
            terminal.show(FAILURE_HELP)

    def _apply_failure_decision(self, step, ref, decision: str, how: str) -> str:
        if decision is Decision.ABORT:
            raise RunAborted(f"aborted by the operator after '{step.label}' failed")
        if decision is Decision.ROLLBACK:
            raise RollbackRequested(f"the operator chose to roll back after '{step.label}' failed")
        if decision is Decision.SKIP:
            self.emit(ev.OPERATOR_SKIPPED, ref, {"reason": "scripted", "scripted": True})
        return decision

    def _scripted_decision(self, step, ref: dict, answer) -> str:
        word = answer if isinstance(answer, str) else answer.get("answer", "yes")
        decision = Decision.RUN if word is True else ANSWER_WORDS[str(word).lower()]
        if decision is Decision.RUN:
            self.emit(ev.OPERATOR_CONFIRMED, ref, {"answer": "yes", "scripted": True})
            return Decision.RUN
        if decision is Decision.SKIP:
            reason = answer.get("reason", "scripted") if isinstance(answer, dict) else "scripted"
            self.emit(ev.OPERATOR_SKIPPED, ref, {"reason": reason, "scripted": True})
            return Decision.SKIP
        raise RunAborted(f"aborted by the answers file at '{step.label}'")

    def _skip(self, ref: dict, reason: str) -> str:
        self.emit(ev.OPERATOR_SKIPPED, ref, {"reason": reason or "(no reason given)"})
        return Decision.SKIP

    def _note(self, ref: dict, terminal: Terminal) -> None:
        text = terminal.ask("Note: ")
        if text:
            self.emit(ev.OPERATOR_NOTE, ref, {"note": text})

    def _scripted(self, step_id: str):
        if self.answers is None:
            return None
        return self.answers.get(step_id, self.answers.get("*"))

    def _terminal(self, step, what: str) -> Terminal:
        if self.terminal is None:
            raise RunPaused(f"step '{step.label}' needs an operator's {what}",
                            "resume on a terminal, or give --answers FILE")
        return self.terminal

    def _show_header(self, step, preview: StepPreview) -> None:
        terminal = self.terminal
        terminal.show("")
        terminal.show(f"[{preview.index}/{preview.total}] {step.label}", "bold")
        if step.description:
            terminal.markdown(step.description)
        terminal.show(f"  action:   {preview.action}")
        for line in args_lines(preview.args, terminal.width):
            terminal.show(line)
        for index, line in enumerate(wrapped(preview.plan, terminal.width, 12)):
            terminal.show(("  plan:     " if index == 0 else " " * 12) + line, "cyan")
        if preview.expected:
            terminal.show(f"  expected: {format_duration(preview.expected)}")
        clock = self.rto_clock(preview.remaining_expected)
        terminal.show("  " + clock, "bold red" if "RTO EXCEEDED" in clock
                      else "bold yellow" if "WARNING" in clock else None)

    def rto_clock(self, remaining_expected: float) -> str:
        elapsed = time.time() - self.run_started
        if not self.rto:
            return f"elapsed {format_duration(elapsed)} (no RTO set)"
        left = self.rto - elapsed
        text = (f"RTO: {format_duration(elapsed)} elapsed, {format_duration(max(left, 0))} left "
                f"of {format_duration(self.rto)}")
        if left < 0:
            text += " — RTO EXCEEDED"
        elif remaining_expected > left:
            text += (f" — WARNING: remaining steps are expected to take "
                     f"{format_duration(remaining_expected)}, more than the time left")
        return text

    # --- manual steps ---
    def manual(self, step, ref: dict, args: dict) -> dict:
        """Wait for the operator to confirm a manual step; returns the result data."""
        checklist = [str(item) for item in args.get("checklist") or []]
        answer = self._scripted(step.id)
        if isinstance(answer, dict) and ("checklist" in answer or "note" in answer
                                         or "evidence" in answer):
            return self._scripted_manual(step, ref, args, checklist, answer)
        if isinstance(answer, str) and ANSWER_WORDS.get(answer.lower()) is Decision.RUN and not checklist \
                and args.get("evidence") != "required":
            self.emit(ev.OPERATOR_CONFIRMED, ref, {"item": None, "scripted": True})
            return {"confirmed": [], "evidence": None, "operator_confirmed": True}
        terminal = self._terminal(step, "confirmation of a manual step")
        terminal.show("")
        terminal.show(f"MANUAL STEP: {step.label}")
        terminal.markdown(str(args.get("instructions", "")))
        confirmed = []
        for item in checklist:
            self._confirm_item(step, ref, terminal, item)
            confirmed.append(item)
        if not checklist:
            self._confirm_item(step, ref, terminal, None)
        evidence = self._evidence(ref, terminal, args.get("evidence"))
        return {"confirmed": confirmed, "evidence": evidence, "operator_confirmed": True}

    def _confirm_item(self, step, ref, terminal: Terminal, item: str | None) -> None:
        prompt = f"  [ ] {item} — done? [y/a/n] " if item else "Done? [y/a/n] "
        while True:
            reply = terminal.ask(prompt).lower()
            if reply in ("y", "yes"):
                self.emit(ev.OPERATOR_CONFIRMED, ref, {"item": item})
                return
            if reply in ("a", "abort"):
                raise RunAborted(f"aborted by the operator at manual step '{step.label}'")
            if reply in ("n", "note"):
                self._note(ref, terminal)

    def _evidence(self, ref: dict, terminal: Terminal, mode) -> str | None:
        if mode not in ("required", "optional"):
            return None
        while True:
            text = terminal.ask("Evidence (ticket, link): ")
            if text or mode == "optional":
                if text:
                    self.emit(ev.OPERATOR_NOTE, ref, {"evidence": text})
                return text or None

    def _scripted_manual(self, step, ref, args, checklist: list[str], answer: dict) -> dict:
        wanted = answer.get("checklist")
        confirmed = checklist if wanted in ("all", True) else [str(i) for i in (wanted or [])]
        missing = [item for item in checklist if item not in confirmed]
        if missing:
            raise RunPaused(f"manual step '{step.label}': answers do not confirm {missing}")
        for item in confirmed:
            self.emit(ev.OPERATOR_CONFIRMED, ref, {"item": item, "scripted": True})
        if not checklist:
            self.emit(ev.OPERATOR_CONFIRMED, ref, {"item": None, "scripted": True})
        evidence = answer.get("evidence")
        if args.get("evidence") == "required" and not evidence:
            raise RunPaused(f"manual step '{step.label}' requires evidence; the answers give none")
        if answer.get("note"):
            self.emit(ev.OPERATOR_NOTE, ref, {"note": str(answer["note"]), "scripted": True})
        return {"confirmed": confirmed, "evidence": evidence, "operator_confirmed": True,
                "note": answer.get("note")}

    # --- approvals ---
    def approval(self, step, ref: dict, args: dict, run_id: str) -> dict:
        """Succeed once the quorum is met; otherwise record the request and pause."""
        granted = approvals_for(self.events, step.id)
        needed = int(args.get("min_approvals", 1))
        if len(granted) >= needed:
            return {"approved_by": [g["operator"] for g in granted], "approvals": len(granted)}
        requested = _last(self.events, ev.APPROVAL_REQUESTED, step.id)
        if requested is None:
            self.emit(ev.APPROVAL_REQUESTED, ref, {
                "approvers": list(args.get("approvers") or []), "min_approvals": needed,
                "separate_duty": bool(args.get("separate_duty")),
                "requested_by": run_operator(self.events), "message": args.get("message", "")})
        elif args.get("timeout") is not None and _age(requested) > float(args["timeout_seconds"]):
            if args.get("on_timeout", "fail") == "continue":
                return {"approved_by": [g["operator"] for g in granted], "timed_out": True}
            raise ApprovalTimeout(f"approval timed out after {args['timeout']} with "
                                   f"{len(granted)} of {needed} approvals")
        who = ", ".join(g["operator"] for g in granted) or "nobody yet"
        raise RunPaused(
            f"step '{step.label}' waits for approval: {len(granted)} of {needed} "
            f"({who}); {needed - len(granted)} more needed",
            f"approve with: runbook approve {run_id} {step.id} --operator NAME "
            f"[--comment TEXT]; then: runbook resume {run_id}")


def approvals_for(events: list, step_id: str) -> list[dict]:
    """Distinct approvals recorded for a step since its latest request."""
    granted, seen = [], set()
    for event in events:
        if event.step_id != step_id:
            continue
        if event.type == ev.APPROVAL_GRANTED and event.operator not in seen:
            seen.add(event.operator)
            granted.append({"operator": event.operator, "comment": event.data.get("comment")})
    return granted


def run_operator(events: list) -> str:
    for event in events:
        if event.type == ev.RUN_STARTED:
            return event.operator
    return ""


def _last(events: list, kind: str, step_id: str):
    for event in reversed(events):
        if event.type == kind and event.step_id == step_id:
            return event
    return None


def _age(event) -> float:
    return age(event.ts)
