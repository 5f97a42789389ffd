"""One invocation of a step's action: render → plan or run → attempts with ``until`` →
verify → exactly one end event. Every way an attempt ends goes through one named
handler: ``handle_success``, ``handle_failure`` or ``handle_planned``."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from engine import actions
from engine.actions.arguments import check_rendered_args
from engine.actions.base import ActionError, Result
from engine.errors import KnownOnlyAtRunTime
from engine.control import Decision, RollbackRequested, RunAborted, RunPaused
from engine.journal import events as ev
from engine.run.rehearsal import UNKNOWN_ARGS, has_unknown
from engine.run.runtime import Runtime
from engine.run.values import STANDARD_KEYS, failed_value, result_value, skipped_value
from engine.source.model import Step, Verify
from engine.templating import TemplateFailure
from engine.unknowns import UNKNOWN_MARK, Unknown, UnknownValue, contains_unknown

HIDDEN = "<hidden: no_log>"
SENSITIVE = "***"
#: how a plan says its step would change nothing (``no change: already 5``): later
#: read-only steps on the same things then see the real state and run
NO_CHANGE = "no change"


class StepFailed(Exception):
    """A step failed and nothing ignored or rescued it."""

    def __init__(self, step: Step, message: str, ref: dict | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.message = message
        self.ref = ref or step_ref(step)


class Invocation:
    """Runs (or plans) one invocation of a step for the walker; returns the registered value."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def execute(self, step: Step, scope: dict, ref: dict) -> Any:
        cls = actions.get_action(step.action)
        try:
            args = self.render_args(step, cls, scope)
        except UnknownValue as unknown:
            mutates = cls.mutates_for(step.args) if step.mutates is None else step.mutates
            return self.handle_planned(step, ref, f"{step.action}: {UNKNOWN_ARGS} "
                                       f"({unknown.unknown})", str(unknown.unknown), mutates)
        except TemplateFailure as exc:
            self.rt.emit(ev.STEP_STARTED, ref, {"action": step.action})
            return self.handle_failure(step, ref, f"{step.pos}: {exc}")
        # an action whose effect depends on its arguments (aws.call Describe*) says so
        mutates = cls.mutates_for(args) if step.mutates is None else step.mutates
        self._treat_as_secrets(cls, args)
        shown = shown_args(step, cls, args)
        action = cls()
        self.bind(step, ref, scope, None)  # a plan reads the step's target and variables too
        # only a rehearsal compares what steps touch: a live run never pays for it
        touched = self._touched(action, args) if self.rt.policy.tracks_changes else set()
        reason = self.rt.policy.plan_reason(step, mutates, args, touched, cls.sets_facts)
        if reason is not None:
            return self._plan(step, ref, action, args, shown, mutates, reason, touched)
        try:
            return self._run_until_decided(step, ref, action, args, scope, shown, mutates)
        except UnknownValue as unknown:  # an assert-like action met a value only a run knows
            return self.handle_planned(step, ref, f"would check once {unknown.unknown} is "
                                       "known", str(unknown.unknown), mutates, shown)

    def _plan(self, step, ref, action, args, shown, mutates, reason, touched) -> Unknown:
        """Plan instead of run: say what would change (or what would be checked, and why)."""
        finding = None
        if reason == UNKNOWN_ARGS:
            line = f"{describe_args(step.action, args)} ({UNKNOWN_ARGS})"
        else:  # a no_log step's plan still runs its pre-flight look-ups, shown hidden
            line, refusal = self.plan_or_refusal(action, args, step)
            if refusal is not None:
                finding = self._finding_of(line, refusal, touched)
                if finding is None:
                    line = (f"{line} (may hold after '{self.rt.policy.changed_by(touched)}', "
                            "which this rehearsal only plans)")
        if step.no_log:
            line = f"{step.action} {HIDDEN}"
            finding = finding and f"pre-flight probe failed, details {HIDDEN}"
        if finding is not None:
            where = f" on {ref['target']}" if ref.get("target") else ""
            self.rt.policy.record_finding(step, finding, where)
        if reason and reason != UNKNOWN_ARGS:
            line = f"{reason}: {line}"
        if mutates and not line.startswith(NO_CHANGE):
            self.rt.policy.record_change(step, touched, ref.get("name"))
        unknown = first_unknown_text(args) if reason == UNKNOWN_ARGS else None
        return self.handle_planned(step, ref, line, unknown, mutates, shown, finding)

    def bind(self, step: Step, ref: dict, scope: dict, deadline: float | None) -> None:
        """Tell the context which step runs in this thread: its deadline, the scope its
        expressions see, the target it acts on and its variables."""
        def evaluate(expression, extra: dict | None = None) -> bool:
            return self.rt.templar.truth(expression, {**scope, **extra} if extra else scope)

        self.rt.ctx.bind_step(deadline, evaluate, step, ref, self.rt.target_settings(ref), scope)

    def _finding_of(self, line: str, refusal: str, touched: set[str]) -> str | None:
        """A plan the service refused (a 404, a forbidden namespace, an invalid field) is a
        finding before the incident — unless an earlier planned step changes what this one
        touches (it creates the object, say): then only the real run can tell."""
        if self.rt.policy.changed_by(touched) is not None:
            return None
        return refusal

    def _touched(self, action, args) -> set[str]:
        try:
            return set(action.touches(args, self.rt.ctx))
        except Exception:  # a broken touches() must not end a rehearsal: assume nothing
            return set()

    def _run_until_decided(self, step, ref, action, args, scope, shown, mutates) -> Any:
        """Run the action; after a failure in step mode the operator may retry or skip it."""
        while True:
            self.rt.checkpoint()
            self.rt.emit(ev.STEP_STARTED, ref, {"action": step.action, "args": shown,
                                                "mutates": mutates})
            try:
                return self._attempts(step, ref, action, args, scope)
            except StepFailed as failure:
                with self.rt.interruptible():
                    decision = self.rt.guide.after_failure(step, ref, failure.message)
                if decision is Decision.RETRY:
                    continue
                if decision is Decision.SKIP:
                    self.rt.emit(ev.STEP_SKIPPED, ref, {"reason": "skipped by the operator "
                                                        "after a failure",
                                                        "value": skipped_value()})
                    return skipped_value()
                raise

    # --- arguments and plans ---
    def render_args(self, step: Step, cls, scope: dict) -> Any:
        templar = self.rt.templar
        if cls.raw_args and isinstance(step.args, dict):
            args = {k: (v if k in cls.raw_args else templar.render(v, scope))
                    for k, v in step.args.items()}
        else:
            args = templar.render(step.args, scope)
        if args is None:
            args = {}
        # An unknown satisfies any type until the real run: the check waits for it.
        problem = check_rendered_args(cls, args) if not has_unknown(args) else None
        if problem:
            raise TemplateFailure(f"after rendering: {problem}")
        return args

    def _treat_as_secrets(self, cls, args: Any) -> None:
        """An action's sensitive argument values are masked wherever they show up later
        (a message, a plan, a result), like inventory secrets."""
        if cls.sensitive_args and isinstance(args, dict):
            self.rt.redactor.add(str(args[k]) for k in cls.sensitive_args
                                 if args.get(k) not in (None, ""))

    def plan_line(self, action, args, step: Step) -> str:
        """What the action would do (a refused plan shows the service's answer)."""
        return self.plan_or_refusal(action, args, step)[0]

    def plan_or_refusal(self, action, args, step: Step) -> tuple[str, str | None]:
        """The plan line, and the refusal's text when the plan found a problem (an
        ``ActionError``: the service refuses the change, an object is missing)."""
        try:
            with self.rt.interruptible():  # a plan may do slow read-only look-ups
                return one_line(action.plan(args, self.rt.ctx)), None
        except KnownOnlyAtRunTime as exc:
            return f"{step.action}: {exc}", None
        except UnknownValue as unknown:
            return f"{step.action}: needs {unknown.unknown}, known only at run time", None
        except ActionError as exc:
            return f"{step.action}: {one_line(str(exc))}", one_line(str(exc))
        except Exception as exc:  # a plan must never end a rehearsal
            return f"{step.action} (plan unavailable: {type(exc).__name__})", None

    # --- attempts ---
    def _attempts(self, step: Step, ref: dict, action, args, scope: dict) -> Any:
        attempt, start = 0, time.monotonic()
        while True:
            attempt += 1
            value = self._invoke(step, ref, action, args, scope)
            problem = self._attempt_problem(step, value, scope)
            if problem is None or attempt > step.retries:
                break
            self.rt.emit(ev.STEP_RETRY, ref, {"attempt": attempt,
                                              "message": HIDDEN if step.no_log else problem})
            self._wait(step.delay)
        if problem is None:
            problem = self._verify(step, ref, action, args, scope, value)
        value["attempts"] = attempt
        # The step took what its attempts, retry delays and verify waits took together.
        value["elapsed"] = round(time.monotonic() - start, 3)
        self.rt.policy.count_ran(step, value["elapsed"])
        if problem is not None:
            value.update(ok=False, failed=True, message=problem)
            return self.handle_failure(step, ref, problem, value)
        return self.handle_success(step, ref, scope, value)

    def _wait(self, seconds: float) -> None:
        with self.rt.interruptible():
            cancelled = self.rt.ctx.cancelled.wait(seconds)
        if cancelled:
            raise KeyboardInterrupt

    def _invoke(self, step: Step, ref: dict, action, args, scope: dict) -> dict:
        ctx = self.rt.ctx
        self.bind(step, ref, scope, time.monotonic() + step.timeout if step.timeout else None)
        start = time.monotonic()
        try:
            with self.rt.interruptible():
                result = action.run(args, ctx)
        except (ActionError, TemplateFailure) as exc:
            result = Result(ok=False, message=str(exc))
        except RunPaused as pause:
            self.rt.emit(ev.STEP_PAUSED, ctx.step_ref, {"reason": pause.reason,
                                                        "hint": pause.hint})
            raise
        except (KeyboardInterrupt, SystemExit, RunAborted, RollbackRequested, UnknownValue):
            raise
        except Exception as exc:  # an action bug must fail the step, not the engine
            result = Result(ok=False, message=f"action {step.action} crashed: "
                                              f"{type(exc).__name__}: {exc}")
        return self._judged(step, action, scope, result, time.monotonic() - start)

    def _judged(self, step: Step, action, scope: dict, result: Result, elapsed: float) -> dict:
        if step.timeout and elapsed > step.timeout and result.ok:
            result = Result(ok=False, data=result.data,
                            message=f"timed out after {step.timeout:g}s")
        if action.sets_facts and result.ok:
            scope.update(result.data)
        if step.mutates is False and result.changed:
            result = replace(result, changed=False)  # the author declared it a read-only probe
        return result_value(result, elapsed)

    def _attempt_problem(self, step: Step, value: dict, scope: dict) -> str | None:
        if step.until is None:
            return None if value["ok"] else value["message"] or "failed"
        try:
            held = self.rt.templar.truth(step.until, result_scope(step, scope, value))
        except (TemplateFailure, UnknownValue) as exc:
            return f"until: {exc}"
        return None if held else f"until not met: {step.until}"

    # --- verify ---
    def _verify(self, step: Step, ref: dict, action, args, scope: dict, value: dict) -> str | None:
        for check in step.verify:
            problem = self._verify_one(step, ref, check, action, args, scope, value)
            if problem is not None:
                return problem
        return None

    def _verify_one(self, step, ref, check: Verify, action, args, scope, value) -> str | None:
        tries = 0
        while True:
            failed = self._failed_expression(check, result_scope(step, scope, value))
            if failed is None:
                self.rt.emit(ev.VERIFY_PASSED, ref, {"that": list(check.that)})
                return None
            if tries >= check.retries or (action.mutates_for(args) and step.mutates is not False):
                break
            tries += 1
            self._wait(check.delay)
            value.update(self._invoke(step, ref, action, args, scope))  # re-probe read-only state
        message = self._verify_message(check, failed, result_scope(step, scope, value))
        self.rt.emit(ev.VERIFY_FAILED, ref, {"that": list(check.that), "message": message})
        return message

    def _verify_message(self, check: Verify, failed: str, scope: dict) -> str:
        if not check.message:
            return f"verification failed: {failed}"
        try:
            return str(self.rt.templar.render(check.message, scope))
        except (TemplateFailure, UnknownValue):
            return check.message

    def _failed_expression(self, check: Verify, scope: dict) -> str | None:
        for expression in check.that:
            try:
                if not self.rt.templar.truth(expression, scope):
                    return expression
            except (TemplateFailure, UnknownValue) as exc:
                return f"{expression} ({exc})"
        return None

    # --- the ways an invocation ends ---
    def handle_success(self, step: Step, ref: dict, scope: dict, value: dict) -> dict:
        data = end_data(step, value)
        if step.rollback:
            data["rollback"] = self.rt.undo_log.record(
                step, result_scope(step, scope, value), self.rt.templar, ref)
        self.rt.emit(ev.STEP_SUCCEEDED, ref, data)
        return value

    def handle_failure(self, step: Step, ref: dict, message: str,
                       value: dict | None = None) -> Any:
        """Record the failure; raise ``StepFailed`` unless it is ignored or a finding."""
        value = value or failed_value(message)
        if step.no_log:  # a failure message may quote the hidden output (stderr's last line)
            message = f"failed, details {HIDDEN}"
        data = end_data(step, value)
        data["message"] = message
        finding = self.rt.policy.failure_is_finding(step)
        if finding:
            data["finding"] = True
            self.rt.policy.record_finding(step, message)
        if step.ignore_errors:
            data["ignored"] = True
        self.rt.emit(ev.STEP_FAILED, ref, data)
        if finding:
            return Unknown(step.register or step.id, step.id)
        if not step.ignore_errors:
            raise StepFailed(step, f"{step.label}: {message}", ref)
        return value

    def handle_planned(self, step: Step, ref: dict, plan: str, unknown: str | None,
                       mutates: bool, args: Any = None, finding: str | None = None) -> Unknown:
        estimate = self.rt.policy.count_planned(step)
        self.rt.emit(ev.STEP_PLANNED, ref, {
            "action": step.action, "plan": plan, "args": args, "unknown": unknown,
            "mutates": mutates, "expected_duration": step.expected_duration,
            **estimate_data(estimate), **({"finding": finding} if finding else {}),
            "checks": [f"would check: {' and '.join(c.that)} after '{step.label}'"
                       for c in step.verify]})
        return Unknown(step.register or step.id, step.id)


def shown_args(step: Step, cls, args: Any) -> Any:
    """The arguments as journaled: hidden by ``no_log``, the action's sensitive ones masked."""
    if step.no_log:
        return HIDDEN
    if cls.sensitive_args and isinstance(args, dict):
        return {k: (SENSITIVE if k in cls.sensitive_args and v not in (None, "") else v)
                for k, v in args.items()}
    return args


def estimate_data(estimate) -> dict:
    """The plan's estimate for one step and where it comes from."""
    if estimate is None:
        return {}
    return {"estimate": round(estimate.seconds, 3), "estimate_source": estimate.source}


def describe_args(action: str, args: Any) -> str:
    """``action key=value, ...`` with unknown parts shown as what they will come from."""
    if isinstance(args, dict):
        return f"{action} " + ", ".join(f"{k}={_shown(v)}" for k, v in args.items())
    return f"{action} {_shown(args)}"


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    return str(value)


def first_unknown_text(args: Any) -> str | None:
    unknown = contains_unknown(args)
    if unknown is not None:
        return str(unknown)
    text = _shown(args)
    start = text.find("<from step ")
    if start < 0:
        start = text.rfind("<", 0, text.find(UNKNOWN_MARK))
    end = text.find(">", start)
    return text[start:end + 1] if start >= 0 and end > start else None


def end_data(step: Step, value: dict) -> dict:
    data = {"changed": value["changed"], "elapsed": value["elapsed"],
            "message": HIDDEN if step.no_log else value["message"],
            "attempts": value.get("attempts", 1), "expected_duration": step.expected_duration}
    # The standard keys are already above: keep only the action's own data,
    # which ``restored_value`` puts back together on resume.
    data["value"] = HIDDEN if step.no_log else {
        k: v for k, v in value.items() if k not in STANDARD_KEYS or k == "ok"}
    return data


def result_scope(step: Step, scope: dict, value: dict) -> dict:
    local = dict(scope)
    local["result"] = value
    if step.register:
        local[step.register] = value
    return local


def step_ref(step: Step) -> dict:
    return {"id": step.id, "path": step.path, "name": step.label}


def one_line(text: str) -> str:
    """Plans are one line: multi-line scripts are joined with a visible marker."""
    return " ⏎ ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())
