"""Walking the step tree: groups (block/rescue/always, parallel), ``when``, tags,
``--start-at``, loops and targets, and restoring what a resumed run already did.
Each action invocation is handed to ``Invocation``."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine import actions
from engine.control import Decision
from engine.journal import events as ev
from engine.journal.replay import step_key
from engine.run.conditional import plan_undecided_group, plan_undecided_step, when_text
from engine.run.invocation import Invocation, StepFailed, step_ref
from engine.run.preview import Previews
from engine.run.runtime import Runtime
from engine.run.values import STANDARD_KEYS, failed_value, loop_value, restored_value, skipped_value
from engine.source.model import Step, StepKind
from engine.templating import TemplateFailure
from engine.unknowns import Unknown, UnknownValue

_MISSING = object()
_NO_ITEM = object()  # a step without a loop runs once per target


class Walker:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.invocation = Invocation(runtime)
        self._started = runtime.options.start_at is None
        self.previews = Previews(runtime, self.invocation)

    def steps(self, steps, scope: dict, tags: frozenset) -> None:
        for step in steps:
            self.step(step, scope, tags | step.tags)

    def step(self, step: Step, scope: dict, tags: frozenset) -> None:
        if step.kind is StepKind.BLOCK:
            self._block(step, scope, tags)
        elif step.kind is StepKind.PARALLEL:
            self._parallel(step, scope, tags)
        else:
            self._action_step(step, scope, tags)

    # --- groups ---
    def _group_allowed(self, step: Step, scope: dict) -> bool:
        """Evaluate a group's ``when`` (it applies to every step inside)."""
        if step.when is None or not self._started:
            return True
        ref = step_ref(step)
        try:
            if self.rt.templar.truth(step.when, self._local_scope(step, scope)):
                return True
        except UnknownValue as unknown:
            plan_undecided_group(self.rt, step, unknown)
            return False
        except TemplateFailure as exc:
            self.invocation.handle_failure(step, ref, f"{step.pos}: when: {exc}")
            return False
        self.rt.emit(ev.STEP_SKIPPED, ref, {"reason": f"condition false: {when_text(step.when)}"})
        return False

    def _block(self, step: Step, scope: dict, tags: frozenset) -> None:
        if not self._group_allowed(step, scope):
            return
        try:
            local = self._local_scope(step, scope)
        except TemplateFailure as exc:
            self.invocation.handle_failure(step, step_ref(step), f"{step.pos}: {exc}")
            return
        try:
            rescued = self.rt.replay.rescued.get(step.id)
            if rescued is None:
                self.steps(step.block, local, tags)
            else:  # resumed after the block failed and its rescue began
                self._rescue(step, local, tags, rescued)
        except StepFailed as failure:
            if not step.rescue:
                self.steps(step.always, local, tags)
                raise
            failed = {"step": failure.step.id, "message": failure.message,
                      "key": step_key(failure.ref)}
            self.rt.emit(ev.STEP_RESCUED, step_ref(step), failed)
            self._rescue(step, local, tags, failed)
        self.steps(step.always, local, tags)
        merge_back(scope, local)

    def _rescue(self, step: Step, local: dict, tags: frozenset, failed: dict) -> None:
        local["failure"] = {"step": failed["step"], "message": failed["message"]}
        try:
            self.steps(step.rescue, local, tags)
        except StepFailed:
            self.steps(step.always, local, tags)
            raise

    def _parallel(self, step: Step, scope: dict, tags: frozenset) -> None:
        if not self._group_allowed(step, scope):
            return
        branches = [dict(scope) for _ in step.children]

        def run_branch(index: int) -> None:
            child = step.children[index]
            self.step(child, branches[index], tags | child.tags)

        errors = self.run_concurrently(run_branch, len(step.children), len(step.children))
        for branch in branches:
            merge_back(scope, branch)
        if errors:
            raise errors[0]

    def run_concurrently(self, fn, count: int, workers: int) -> list[StepFailed]:
        """Run ``fn(i)`` for i in range(count) on ``workers`` threads; collect step failures."""
        failures: list[StepFailed] = []
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(fn, i) for i in range(count)]
            try:
                for future in futures:
                    try:
                        with self.rt.interruptible():
                            future.result()
                    except StepFailed as failure:
                        failures.append(failure)
            except KeyboardInterrupt:
                self.rt.ctx.cancelled.set()
                self.rt.ctx.kill_processes()
                for future in futures:
                    future.cancel()
                raise
        return failures

    # --- one action step ---
    def _action_step(self, step: Step, scope: dict, tags: frozenset) -> None:
        if not self._reached(step):
            return
        ref = self._named_ref(step, scope)
        done = self.rt.replay.completed.get(step.id)
        if done is not None:
            self._restore(step, scope, done)
            return
        if not self.rt.options.selects_tags(tags):
            self.rt.emit(ev.STEP_SKIPPED, ref, {"reason": "excluded by --tags/--skip-tags"})
            return
        local = self._allowed_scope(step, scope, ref)
        if local is None:
            return
        if self.rt.policy.asks_operator() and self.rt.guide.step_mode:
            with self.rt.interruptible():
                decision = self.rt.guide.before_step(step, ref, self.previews.of(step, local))
            if decision is Decision.SKIP:
                self.rt.emit(ev.STEP_SKIPPED, ref, {"reason": "skipped by the operator",
                                                    "value": skipped_value()})
                self.register(step, scope, skipped_value())
                return
        if step.loop is not None or step.target is not None:
            self._iterations(step, scope, local, ref)
        else:
            self.register(step, scope, self.invocation.execute(step, local, ref))

    def _named_ref(self, step: Step, scope: dict) -> dict:
        """The step's journal reference, its name rendered when it is a template
        (``Restart {{ item }}`` shows which item it restarts)."""
        ref = step_ref(step)
        if "{{" in ref["name"]:
            try:
                ref["name"] = str(self.rt.templar.render_string(ref["name"], scope))
            except (TemplateFailure, UnknownValue):
                pass  # a name is for people: the raw template is still better than nothing
        return ref

    def _reached(self, step: Step) -> bool:
        """``--start-at``: steps before the named one are passed over."""
        if not self._started and step.id == self.rt.options.start_at:
            self._started = True
        return self._started

    def _allowed_scope(self, step: Step, scope: dict, ref: dict) -> dict | None:
        """The step's scope when its ``when`` holds; None when it is skipped or planned.
        A loop's or a fan-out's ``vars`` are rendered per item (they may use ``item``)."""
        iterated = step.loop is not None or step.target is not None
        try:
            local = scope if iterated else self._local_scope(step, scope)
            if step.when is None or self.rt.templar.truth(step.when, local):
                return local
            self.rt.emit(ev.STEP_SKIPPED, ref, {"reason": f"condition false: "
                                                          f"{when_text(step.when)}",
                                                "value": skipped_value()})
            self.register(step, scope, skipped_value())
        except UnknownValue as unknown:
            self._plan_conditional(step, scope, ref, unknown)
        except TemplateFailure as exc:
            self.invocation.handle_failure(step, ref, f"{step.pos}: {exc}")
            self.register(step, scope, failed_value(str(exc)))
        return None

    def _local_scope(self, step: Step, scope: dict) -> dict:
        if not step.vars:
            return scope
        local = dict(scope)
        for name, value in step.vars.items():
            try:
                local[name] = self.rt.templar.render(value, local)
            except UnknownValue as unknown:  # dry-run: the step's arguments become unknown
                local[name] = unknown.unknown
            except TemplateFailure as exc:
                raise TemplateFailure(f"vars.{name}: {exc}") from None
        return local

    def _plan_conditional(self, step: Step, scope: dict, ref: dict,
                          unknown: UnknownValue, plan: str | None = None) -> None:
        """A step that only a real run can decide about: planned, naming what is unknown."""
        plan_undecided_step(self.rt, step, ref, unknown, plan)
        self.register(step, scope, Unknown(step.register or step.id, step.id))

    # --- loops and targets ---
    def _iterations(self, step: Step, scope: dict, local: dict, ref: dict) -> None:
        """Run a step once per target and loop item, each journaled (and resumed) on its own."""
        try:
            targets = self._targets(step, local, ref)
            items = self._loop_items(step, local) if step.loop is not None else [_NO_ITEM]
        except UnknownValue as unknown:
            what = "target" if step.target is not None and step.loop is None else "item"
            self._plan_conditional(step, scope, ref, unknown,
                                   f"{step.action} for each {what} of {unknown.unknown}")
            return
        except TemplateFailure as exc:
            what = "target" if "target" in str(exc) and step.target is not None else "loop"
            self.invocation.handle_failure(step, ref, f"{step.pos}: {what}: {exc}")
            self.register(step, scope, failed_value(str(exc)))
            return
        runs = [(name, index, item) for name in targets for index, item in enumerate(items)]
        results: list[Any] = [None] * len(runs)

        def run_one(position: int) -> None:
            results[position] = self._one_iteration(step, local, ref, *runs[position])

        if step.loop_parallel > 1:
            failures = self.run_concurrently(run_one, len(runs), step.loop_parallel)
            if failures:
                raise failures[0]
        else:
            for position in range(len(runs)):
                run_one(position)
        single = step.loop is None and len(runs) == 1
        self.register(step, scope, results[0] if single else loop_value(results))

    def _one_iteration(self, step: Step, local: dict, ref: dict, name, index: int, item) -> Any:
        one_scope = dict(local)
        if name is not None:
            one_scope["target"] = self.rt.scope["targets"][name]
        if item is not _NO_ITEM:
            one_scope[step.loop_var] = item
            one_scope["loop_index"] = index
        one_ref = {**ref, **self._named_ref(step, one_scope)}
        try:
            one_scope = self._local_scope(step, one_scope)
        except TemplateFailure as exc:
            self.rt.emit(ev.STEP_STARTED, one_ref, {"action": step.action})
            return self.invocation.handle_failure(step, one_ref, f"{step.pos}: {exc}")
        if name is not None:
            one_ref["target"] = name
        if item is not _NO_ITEM:
            one_ref["item"] = index
        done = self.rt.replay.completed.get(step_key(one_ref))
        value = (restored_value(done) if done is not None
                 else self.invocation.execute(step, one_scope, one_ref))
        if name is not None and isinstance(value, dict):
            value = {**value, "target": name}
        return value

    def _targets(self, step: Step, scope: dict, ref: dict) -> list[str | None]:
        """The inventory targets a step runs on (groups expanded, ``--limit`` applied)."""
        if step.target is None:
            return [None]
        wanted = self.rt.templar.render(step.target, scope)
        if isinstance(wanted, Unknown):
            raise UnknownValue(wanted)
        names = resolve_targets(wanted, self.rt.scope.get("targets", {}),
                                self.rt.scope.get("groups", {}))
        kept = [n for n in names if self.rt.options.selects_target(n)]
        for name in names:
            if name not in kept:
                self.rt.emit(ev.STEP_SKIPPED, {**ref, "target": name},
                             {"reason": f"excluded by --limit {self.rt.options.limit}",
                              "value": skipped_value()})
        return kept

    def _loop_items(self, step: Step, scope: dict) -> list:
        items = step.loop
        if isinstance(items, str):
            items = self.rt.templar.render(items, scope)
        else:
            items = [self.rt.templar.render(i, scope) for i in items]
        if isinstance(items, Unknown):
            raise UnknownValue(items)
        if isinstance(items, dict):
            return [{"key": k, "value": v} for k, v in items.items()]
        if not isinstance(items, (list, tuple)):
            raise TemplateFailure(f"loop must be a list, got {type(items).__name__}")
        return list(items)

    # --- registered values ---
    def register(self, step: Step, scope: dict, value: Any) -> None:
        if step.register:
            scope[step.register] = value
        for name, extra in self.rt.extra_vars.items():
            scope[name] = extra  # -e always wins, even over set_fact

    def _restore(self, step: Step, scope: dict, done: dict) -> None:
        value = restored_value(done)
        if step.action and actions.get_action(step.action).sets_facts and isinstance(value, dict):
            scope.update({k: v for k, v in value.items() if k not in STANDARD_KEYS})
        self.register(step, scope, value)


def merge_back(scope: dict, local: dict) -> None:
    """Copy what a block or branch registered back into the enclosing scope."""
    for key, value in local.items():
        if key == "failure":
            continue
        if scope.get(key, _MISSING) is not value:
            scope[key] = value


def resolve_targets(wanted: Any, targets: dict, groups: dict) -> list[str]:
    """Target names from a ``target:`` value: a name, a group, or a list of either."""
    names: list[str] = []
    for entry in wanted if isinstance(wanted, (list, tuple)) else [wanted]:
        entry = str(entry)
        if entry in groups:
            found = list(groups[entry])
        elif entry in targets:
            found = [entry]
        else:
            from engine.source.schema import did_you_mean

            raise TemplateFailure(f"target '{entry}' is not an inventory target or group"
                                  f"{did_you_mean(entry, [*targets, *groups])}")
        names += [n for n in found if n not in names]
    return names
