"""The step debugger: breakpoints, stepping commands and the pause gate the interpreter passes through.

`Run` calls `Debugger.boundary(...)` before a step runs, after it completes and when it fails (and
the same around each for_each item). When nothing asks for a pause the call returns at once without
touching history. When the execution must pause, the gate records where and why in the state,
upserts `RteDebugState`, and waits with `workflow.wait_condition` until a command (a workflow
update) lets it go — so a paused execution survives worker and server restarts.

Depth: 1 is a step of the plan, 2 an item of a for_each step. Commands act on the pause position:
step_over stops at the next boundary at the same depth or shallower, step_into at the very next
boundary (entering a for_each item by item), step_out at the next boundary shallower than the pause.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from rte import temporal as sa
    from rte.errors import EngineError, ErrorCategory
    from workflows import expression_boundary
    from workflows.expressions import Document, check_program, evaluate_program, program_fits_in_thread
    from workflows.plan import PlanStep
    from workflows.state import (
        AuditEntry,
        Breakpoint,
        BreakpointChange,
        DebugCommand,
        DebugState,
        EvaluateResult,
        Frame,
        PauseInfo,
        StepState,
        StepStatus,
        VariableEdit,
        bounded,
    )

MAX_AUDIT = 500
MAX_BREAKPOINTS = 200
STOP_COMMANDS = frozenset({"step_over", "step_into", "step_out", "run_to"})


def rejected(message: str) -> ApplicationError:
    """What a validator raises: the update is refused, nothing changes, the caller reads why."""
    return ApplicationError(message, type=ErrorCategory.VALIDATION.value, non_retryable=True)


class Boundary:
    """One place the execution passes: a step (or item) before it runs, after it ends or on its error."""

    def __init__(
        self,
        step: PlanStep,
        when: str,
        scope: dict[str, Any],
        item_index: int | None = None,
        next_input: Any = None,
        status_of: StepState | None = None,
    ) -> None:
        self.step, self.when, self.scope, self.item_index = step, when, scope, item_index
        self.next_input = next_input
        self.input_edited = False
        self.status_of = status_of  # the step state that reads "paused" while this boundary holds
        self.depth = 1 if item_index is None else 2


class Debugger:
    """Breakpoints, the stepping mode and the pause of one execution; consulted by `Run`."""

    def __init__(self, state: DebugState, definition_id: str, step_ids: dict[str, str], upsert: Any) -> None:
        self.state = state
        self.definition_id = definition_id
        self.step_ids = step_ids  # step path → id, to accept either in commands
        self._upsert = upsert
        self._pause_requested = False
        self._mode: str | None = None  # the stepping command in force
        self._mode_depth = 1
        self._run_to: str | None = None
        self._release = 0  # bumped by every command that lets the execution go on
        self.current: Boundary | None = None
        self._next_id = 1
        for breakpoint in state.breakpoints:
            self._name(breakpoint)

    # ------------------------------------------------------------------------- the gate
    @property
    def active(self) -> bool:
        return self.state.enabled or self._pause_requested

    async def boundary(self, here: Boundary) -> None:
        """Hold here while another boundary is paused; pause here if something asks to."""
        if not self.active:
            return  # the usual case: no history events, no waiting
        while self.state.paused is not None:  # one pause at a time; the others wait their turn
            await workflow.wait_condition(lambda: self.state.paused is None)
        reason, breakpoint_id = await self._reason(here)
        if reason is None:
            return
        self._pause_requested, self._mode, self._run_to = False, None, None
        self.current = here
        self.state.paused = PauseInfo(
            step_path=here.step.path,
            item_index=here.item_index,
            when=here.when,  # type: ignore[arg-type]
            reason=reason,
            breakpoint_id=breakpoint_id,
            paused_at=workflow.now(),
            call_stack=self._stack(here),
            next_input=bounded(here.next_input),
        )
        self.state.status, self.state.stepping = "paused", None
        before = here.status_of.status if here.status_of else None
        if here.status_of is not None:
            here.status_of.status = StepStatus.PAUSED
        self._upsert({sa.DEBUG_STATE: "paused"})
        released = self._release
        await workflow.wait_condition(lambda: self._release != released)
        if here.status_of is not None and before is not None:
            here.status_of.status = before
        self.current, self.state.paused, self.state.status = None, None, "running"
        self._upsert({sa.DEBUG_STATE: "running" if self.state.enabled else ""})

    async def _reason(self, here: Boundary) -> tuple[str | None, str | None]:
        if self._pause_requested:
            return "pause", None
        if self._mode == "step_into":
            return "step_into", None
        if self._mode == "step_over" and here.depth <= self._mode_depth:
            return "step_over", None
        if self._mode == "step_out" and here.depth < self._mode_depth:
            return "step_out", None
        if self._run_to is not None and here.when == "before" and self._run_to == here.step.path:
            return f"run_to {here.step.path}", None
        for breakpoint in self.state.breakpoints:
            if await self._hits(breakpoint, here):
                breakpoint.hits += 1
                return f"breakpoint {breakpoint.id}", breakpoint.id
        return None, None

    async def _hits(self, breakpoint: Breakpoint, here: Boundary) -> bool:
        if not breakpoint.enabled or breakpoint.when != here.when:
            return False
        if self.resolve(breakpoint.step) != here.step.path:
            return False
        per_item = here.step.for_each is not None and (
            breakpoint.condition is not None or breakpoint.items is not None
        )
        if per_item != (here.item_index is not None):
            return False
        if breakpoint.items is not None and here.item_index not in breakpoint.items:
            return False
        if breakpoint.condition is None:
            return True
        try:
            return await expression_boundary.holds(breakpoint.condition, self.variables(here))
        except EngineError:
            return True  # a broken condition stops rather than silently never firing

    def _stack(self, here: Boundary) -> list[Frame]:
        frames = [Frame(kind="workflow", name=self.definition_id), Frame(kind="step", name=here.step.path)]
        if here.item_index is not None:
            frames.append(
                Frame(kind="item", name=f"{here.step.id}[{here.item_index}]", index=here.item_index)
            )
        return frames

    @staticmethod
    def variables(here: Boundary) -> dict[str, Any]:
        return {**here.scope, "input": here.next_input}

    # --------------------------------------------------------------------- commands
    def validate_command(self, command: DebugCommand) -> None:
        paused = self.state.paused is not None
        if command.action == "pause":
            if paused:
                raise rejected("the execution is already paused")
            return
        if command.action == "run_to":
            if not command.target:
                raise rejected("run_to needs a target step")
            self._require_step(command.target)
        if not paused:
            raise rejected(f"cannot {command.action} while the execution is running: pause it first")

    def command(self, command: DebugCommand, now: Any) -> None:
        self.state.enabled = True
        self._audit(now, command.by, command.action, command.target)
        if command.action == "pause":
            self._pause_requested = True
            self._upsert({sa.DEBUG_STATE: "running"})
            return
        depth = self.current.depth if self.current else 1
        self._mode, self._mode_depth = (command.action if command.action in STOP_COMMANDS else None), depth
        if command.action == "run_to":
            self._mode, self._run_to = None, self.resolve(command.target or "")
        self.state.stepping = command.action if command.action != "continue" else None
        self._release += 1

    def validate_breakpoint(self, change: BreakpointChange) -> None:
        if change.action == "add":
            if change.breakpoint is None:
                raise rejected("add needs a breakpoint")
            self._require_step(change.breakpoint.step)
            if len(self.state.breakpoints) >= MAX_BREAKPOINTS:
                raise rejected(f"at most {MAX_BREAKPOINTS} breakpoints")
            condition = change.breakpoint.condition
            problems = check_program(condition) if condition is not None else []
            if problems:
                raise rejected(f"the condition cannot be used: {problems[0].message}")
            return
        if not change.id or self._find(change.id) is None:
            known = ", ".join(b.id for b in self.state.breakpoints) or "none"
            raise rejected(f"no breakpoint '{change.id}' (breakpoints: {known})")

    def change_breakpoint(self, change: BreakpointChange, now: Any) -> None:
        self.state.enabled = True
        if change.action == "add":
            assert change.breakpoint is not None
            breakpoint = self._name(change.breakpoint.model_copy(update={"hits": 0}))
            self.state.breakpoints.append(breakpoint)
            self._audit(now, change.by, "add_breakpoint", breakpoint.id, None, breakpoint.model_dump())
            return
        breakpoint = self._find(change.id or "")
        assert breakpoint is not None
        if change.action == "remove":
            self.state.breakpoints.remove(breakpoint)
        else:
            breakpoint.enabled = change.action == "enable"
        self._audit(now, change.by, f"{change.action}_breakpoint", breakpoint.id)

    def validate_edit(self, edit: VariableEdit) -> None:
        if self.current is None:
            raise rejected("variables can only be edited while the execution is paused")
        head = edit.path.split(".", 1)[0]
        if head not in ("inputs", "steps", "input", *self.current.scope.keys()):
            raise rejected(f"unknown variable '{head}': edit inputs.…, steps.<id>.output, the item or input")
        if edit.path.startswith("steps."):
            parts = edit.path.split(".")
            if len(parts) < 3 or parts[2] != "output":
                raise rejected("edit a step's output as steps.<id>.output[.field…]")

    def edit(self, edit: VariableEdit, results: dict[str, Any], params: dict[str, Any], now: Any) -> Any:
        """Apply the edit to the paused scope (and to the execution's results); returns the old value."""
        assert self.current is not None
        here = self.current
        parts = edit.path.split(".")
        if parts[0] == "input":
            old = _set(here, "next_input", parts[1:], edit.value)
            here.input_edited = True
        elif parts[0] == "inputs":
            old = _set_in(params, parts[1:], edit.value)
        elif parts[0] == "steps":
            step_id = parts[1]
            old = _set_in(results, [step_id, *parts[3:]], edit.value)
            steps = here.scope.get("steps")
            if isinstance(steps, dict) and step_id in steps:
                steps[step_id]["output"] = results[step_id]
        else:
            old = _set_in(here.scope, parts, edit.value)
        if self.state.paused is not None:
            self.state.paused.next_input = bounded(here.next_input)
        self._audit(now, edit.by, "edit", edit.path, bounded(old), bounded(edit.value))
        return old

    def evaluate(self, expression: str) -> EvaluateResult:
        """Evaluate in the query itself only what is provably cheap on the paused scope; anything
        else is answered `outside=True` for the caller's guarded evaluator (see `debug_variables`)."""
        if self.current is None:
            return EvaluateResult(ok=False, error="the execution is not paused: nothing is in scope")
        document = Document(self.variables(self.current))
        if not program_fits_in_thread(expression, document):
            return EvaluateResult(ok=False, outside=True, error="evaluate this expression outside the workflow")
        try:
            return EvaluateResult(ok=True, value=bounded(evaluate_program(expression, document)))
        except EngineError as error:
            return EvaluateResult(ok=False, error=error.message)

    # --------------------------------------------------------------------- helpers
    def resolve(self, step: str) -> str:
        if step in self.step_ids:
            return step
        return next((path for path, step_id in self.step_ids.items() if step_id == step), step)

    def _require_step(self, step: str) -> None:
        if self.resolve(step) not in self.step_ids:
            known = ", ".join(list(self.step_ids)[:20])
            raise rejected(f"unknown step '{step}' (steps: {known})")

    def _find(self, breakpoint_id: str) -> Breakpoint | None:
        return next((b for b in self.state.breakpoints if b.id == breakpoint_id), None)

    def _name(self, breakpoint: Breakpoint) -> Breakpoint:
        if not breakpoint.id:
            breakpoint.id = f"bp{self._next_id}"
        self._next_id += 1
        return breakpoint

    def _audit(
        self, now: Any, by: str, action: str, target: str | None, old: Any = None, new: Any = None
    ) -> None:
        self.state.audit.append(AuditEntry(at=now, by=by, action=action, target=target, old=old, new=new))
        del self.state.audit[: max(0, len(self.state.audit) - MAX_AUDIT)]


def _set(owner: Any, attribute: str, path: list[str], value: Any) -> Any:
    if not path:
        old = getattr(owner, attribute)
        setattr(owner, attribute, value)
        return old
    container = getattr(owner, attribute)
    if not isinstance(container, dict):
        container = {}
        setattr(owner, attribute, container)
    return _set_in(container, path, value)


def _set_in(container: dict[str, Any], path: list[str], value: Any) -> Any:
    for key in path[:-1]:
        nested = container.get(key)
        if not isinstance(nested, dict):
            nested = container[key] = {}
        container = nested
    old = container.get(path[-1])
    container[path[-1]] = value
    return old
