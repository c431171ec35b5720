"""One execution (or one for_each slice of it): its state, and the life cycle every step goes through.

    reuse (resume) → skip? → if → before boundary → execute (kind or for_each) → on error: pause
    for a decision, continue or fail → after boundary

This module runs inside the Temporal workflow sandbox: deterministic APIs only (`workflow.now`,
timers, activities); everything it imports is passed through. Expressions are evaluated through the
one boundary, `workflows/expression_boundary.py`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.base import BatchItem, StepResult
    from rte import temporal as sa
    from rte.errors import EngineError
    from workflows import expression_boundary
    from workflows.debugger import Boundary, Debugger
    from workflows.plan import ACTIVITY_KINDS, PURE_KINDS, OnError, PlanBlock, PlanStep
    from workflows.run import dag, for_each
    from workflows.run.activity_call import call_activity
    from workflows.run.failures import StepFailed, error
    from workflows.run.kinds import run_kind
    from workflows.run.kinds.approval import approval_key
    from workflows.run.search_attributes import SearchAttributeBuffer
    from workflows.state import (
        ApprovalDecision,
        ApprovalRequest,
        ErrorInfo,
        ExecutionInput,
        ExecutionState,
        ForEachSlice,
        ItemRecord,
        RecoveryDecision,
        RecoveryRecord,
        StepState,
        StepStatus,
        bounded,
    )

# The trail (step paths in start order) keeps this many of the latest starts.
MAX_TRAIL = 10_000
MAX_FAILED_ITEMS_LISTED = 1_000
_NATIVE: Any = object()  # pause_point's marker: a native step previews its input from `with`


class Run:
    """The state and the machinery of one execution (or of one for_each slice of it)."""

    def __init__(self, run_input: ExecutionInput) -> None:
        info = workflow.info()
        self.input = run_input
        self.plan = run_input.plan
        self.params = run_input.params
        self.state = ExecutionState(
            execution_id=info.workflow_id,
            run_id=info.run_id,
            definition_id=self.plan.definition_id,
            definition_version=run_input.definition_version or self.plan.version,
            plan_hash=self.plan.hash,
            trigger=run_input.trigger,
            started_at=workflow.now(),
            params=bounded(run_input.params),
        )
        self.results: dict[str, Any] = {}  # step id → output of completed steps
        self.switch_choices: dict[str, str] = {}  # switch step id → chosen case name
        self.gates = dag.switch_gates(self.plan.root)
        self.approvals: dict[str, ApprovalDecision] = {}  # approval key → decision given
        self.waiting_approvals: dict[str, ApprovalRequest] = {}
        self.trail: list[str] = []  # step paths in the order they started (a step in a loop repeats)
        # max_concurrency: how many steps may do work (activities, timers, waits) at once.
        self.step_slots = asyncio.Semaphore(run_input.config.max_concurrency or self.plan.max_concurrency)
        self.last_progress_upsert = 0.0
        self.search_attributes = SearchAttributeBuffer(enabled=run_input.slice is None)
        for step in self.plan.walk():
            self.state.steps[step.path] = StepState(id=step.id, path=step.path, kind=step.kind.value)
        # Debugging and recovery (workflows/debugger.py): the gate steps pass, the decisions awaited.
        config = run_input.config
        debugging = run_input.slice is None and (config.debug or bool(config.breakpoints))
        self.state.debug.enabled = debugging
        self.state.debug.breakpoints = [b.model_copy() for b in config.breakpoints] if debugging else []
        step_ids = {step.path: step.id for step in self.plan.walk()}
        self.debugger = Debugger(self.state.debug, self.plan.definition_id, step_ids, self.upsert)
        self.awaiting: dict[str, ErrorInfo] = {}  # step path → the failure awaiting a decision
        self.decisions: dict[str, RecoveryDecision] = {}
        self.input_overrides: dict[str, Any] = {}  # approval_key → input an operator gave
        if run_input.resume is not None:
            self.state.resumed_from = run_input.resume.from_execution

    # ----------------------------------------------------------------------------- entry points
    async def run_block(self, block: PlanBlock) -> None:
        await dag.run_block(self, block)

    async def run_slice(self, piece: ForEachSlice) -> list[ItemRecord]:
        return await for_each.run_slice(self, piece)

    # ------------------------------------------------------------------------------ steps
    async def run_step(self, step: PlanStep) -> None:
        state = self.state.steps[step.path]
        if self._reuse(step, state):
            return
        reason = self._skip_reason(step)
        scope = self.scope_for(step) if reason is None else {}
        if reason is None and step.if_ and not await self.holds_or_fail(step, step.if_, scope):
            reason = "its condition is false"
        if reason is not None:
            state.status, state.skipped_reason = StepStatus.SKIPPED, reason
            state.ended_at = workflow.now()
            return
        if step.kind in PURE_KINDS:  # instantaneous: no slot, no current-step update
            await self._run_started(step, scope, state)
            return
        async with self.step_slots:  # max_concurrency: a step waiting here is still pending
            await self._run_started(step, scope, state)

    async def _run_started(self, step: PlanStep, scope: dict[str, Any], state: StepState) -> None:
        state.status, state.started_at = StepStatus.RUNNING, workflow.now()
        self.record_start(step)
        await self.pause_point(step, "before", scope, None, state)
        self.set_current(step, running=True)
        try:
            output = await self._attempts(step, scope, state)
        except StepFailed:
            self.set_current(step, running=False)
            raise
        self.set_current(step, running=False)
        if output is _SKIPPED_AFTER_FAILURE:
            return
        self.results[step.id] = output
        state.status, state.output, state.ended_at = StepStatus.COMPLETED, bounded(output), workflow.now()
        await self.pause_point(step, "after", {**scope, "output": output}, None, state)

    async def _attempts(self, step: PlanStep, scope: dict[str, Any], state: StepState) -> Any:
        """Execute the step; on failure apply on_error (pause for a decision, continue or fail)."""
        while True:
            try:
                if step.for_each:
                    return await for_each.run_for_each(self, step, scope)
                return await run_kind(self, step, scope, None, state)
            except StepFailed as failure:
                failure.error.step_path = failure.error.step_path or step.path
                state.status, state.error, state.ended_at = StepStatus.FAILED, failure.error, workflow.now()
                state.attempts = failure.error.attempts or state.attempts or 1
                self.state.error_count += 1
                self.upsert({sa.ERROR_COUNT: self.state.error_count})
                await self.pause_point(step, "error", scope, None, state)
                mode = self.on_error(step)
                if mode == OnError.PAUSE and not failure.decided:
                    decision = await self.await_decision(step, state, failure.error)
                    if decision.action == "retry":
                        step = self.retried(step, decision, None)
                        state.status, state.error, state.ended_at = StepStatus.RUNNING, None, None
                        continue
                    if decision.action == "skip":
                        return decision.output
                if mode == OnError.CONTINUE:
                    return _SKIPPED_AFTER_FAILURE
                raise

    # ------------------------------------------------------------ debugging and recovery
    async def pause_point(
        self,
        step: PlanStep,
        when: str,
        scope: dict[str, Any],
        item: int | None,
        state: StepState | None,
        task_input: Any = _NATIVE,
    ) -> Boundary | None:
        """A step boundary: the debugger may hold the execution here (workflows/debugger.py).

        Native steps preview their input from `with`; a Serverless Workflow task passes its
        `task_input` and applies an edited one itself (the returned boundary says so).
        """
        if not self.debugger.active:
            return None
        if task_input is not _NATIVE:
            next_input = task_input
        else:
            next_input = await self._preview_input(step, scope) if when == "before" else None
        here = Boundary(step, when, scope, item, next_input, state)
        await self.debugger.boundary(here)
        if here.input_edited and task_input is _NATIVE:
            self.input_overrides[approval_key(step.path, item)] = here.next_input
        return here

    async def _preview_input(self, step: PlanStep, scope: dict[str, Any]) -> Any:
        """The input the step is about to receive (its `with`, evaluated), for the paused view."""
        if step.kind not in ACTIVITY_KINDS or (
            step.for_each and not any(k in scope for k in ("item", step.for_each.item_var))
        ):
            return None
        try:
            return await expression_boundary.evaluate_template(step.with_, scope)
        except EngineError:
            return None

    async def await_decision(
        self, step: PlanStep, state: StepState, failure: ErrorInfo, failed_items: list[int] | None = None
    ) -> RecoveryDecision:
        """on_error: pause — wait (durably) for an operator to retry, skip or fail the step."""
        self.awaiting[step.path] = failure
        state.status, state.awaiting_decision = StepStatus.PAUSED, True
        state.failed_items = (failed_items or [])[:MAX_FAILED_ITEMS_LISTED]
        self.upsert({sa.DEBUG_STATE: "awaiting_decision"})
        await workflow.wait_condition(lambda: step.path in self.decisions)
        decision = self.decisions.pop(step.path)
        del self.awaiting[step.path]
        state.awaiting_decision = False
        state.status = StepStatus.FAILED if decision.action == "fail" else StepStatus.RUNNING
        state.decisions.append(
            RecoveryRecord(
                **decision.model_dump(), decided_at=workflow.now(), failed_items=state.failed_items
            )
        )
        if not self.awaiting:
            self.upsert({sa.DEBUG_STATE: "running" if self.state.debug.enabled else ""})
        return decision

    def retried(self, step: PlanStep, decision: RecoveryDecision, item: int | None) -> PlanStep:
        if decision.input is not None:
            self.input_overrides[approval_key(step.path, item)] = decision.input
        if decision.timeout_s is not None:
            return step.model_copy(update={"timeout_s": decision.timeout_s})
        return step

    def take_input_override(self, step: PlanStep, item: int | None) -> tuple[bool, Any]:
        key = approval_key(step.path, item)
        if key in self.input_overrides:
            return True, self.input_overrides.pop(key)
        return False, None

    def _reuse(self, step: PlanStep, state: StepState) -> bool:
        """Resume from failure: a step that succeeded in the original keeps its recorded output.
        Pure steps are evaluated again (cheap, no side effects, and a switch must choose again)."""
        resume = self.input.resume
        if resume is None or step.path not in resume.outputs or step.kind in PURE_KINDS:
            return False
        output = resume.outputs[step.path]
        self.results[step.id] = output
        state.status, state.output, state.reused_from = (
            StepStatus.COMPLETED,
            bounded(output),
            resume.from_execution,
        )
        state.started_at = state.ended_at = workflow.now()
        return True

    def on_error(self, step: PlanStep) -> OnError:
        mode = self.input.config.error_mode
        if mode == "continue":
            return OnError.CONTINUE
        if mode == "pause":
            return OnError.PAUSE
        if mode == "fail_fast":
            return OnError.FAIL
        return step.on_error

    def _skip_reason(self, step: PlanStep) -> str | None:
        statuses = [self.state.steps[self._path_of(need, step)].status for need in step.needs]
        for need, status in zip(step.needs, statuses, strict=True):
            if status == StepStatus.FAILED:
                return f"step '{need}' failed"
        gate = self.gates.get(step.id)
        if gate is not None:
            switch_id, cases = gate
            if self.state.steps[self._path_of(switch_id, step)].status == StepStatus.SKIPPED:
                return f"switch '{switch_id}' was skipped"
            if self.switch_choices.get(switch_id) not in cases:
                return f"switch '{switch_id}' chose another case"
        if statuses and all(status == StepStatus.SKIPPED for status in statuses):
            return "every step it needs was skipped"
        return None

    def _path_of(self, step_id: str, sibling: PlanStep) -> str:
        prefix = sibling.path.rsplit("/", 1)[0]
        return f"{prefix}/{step_id}"

    def scope_for(self, step: PlanStep) -> dict[str, Any]:
        """The jq document a native step's expressions see: inputs and the steps it reads."""
        steps = {
            step_id: {
                "output": self.results.get(step_id),
                "status": self.state.steps[self._path_of(step_id, step)].status.value,
            }
            for step_id in step.reads
        }
        return {"inputs": self.params, "steps": steps}

    # ------------------------------------------------------------------------ expressions
    async def evaluate_or_fail(self, step: PlanStep, program: str, scope: Any) -> Any:
        """One bare program of a step (`if`, `items`, a switch's `when`); a failure fails the step."""
        try:
            return await expression_boundary.evaluate(program, scope)
        except EngineError as failure:
            raise self._failed(step, failure) from None

    async def template_or_fail(self, step: PlanStep, template: Any, scope: Any) -> Any:
        """A step's template (`with`, …); a failure fails the step."""
        try:
            return await expression_boundary.evaluate_template(template, scope)
        except EngineError as failure:
            raise self._failed(step, failure) from None

    async def holds_or_fail(self, step: PlanStep, program: str, scope: Any) -> bool:
        try:
            return await expression_boundary.holds(program, scope)
        except EngineError as failure:
            raise self._failed(step, failure) from None

    @staticmethod
    def _failed(step: PlanStep, failure: EngineError) -> StepFailed:
        return StepFailed(error(failure.category, failure.message, step_path=step.path, details=failure.details))

    # ------------------------------------------------------------------------ activities
    async def call_activity(
        self,
        step: PlanStep,
        params: dict[str, Any],
        item_index: int | None,
        batch: list[BatchItem] | None = None,
        *,
        local: bool | None = None,
        output_budget_bytes: int | None = None,
    ) -> StepResult:
        return await call_activity(
            self.input, step, params, item_index, batch, local=local, output_budget_bytes=output_budget_bytes
        )

    # ------------------------------------------------------------------- progress reporting
    def record_start(self, step: PlanStep) -> None:
        self.trail.append(step.path)
        if len(self.trail) > MAX_TRAIL:
            del self.trail[: len(self.trail) - MAX_TRAIL]

    def set_current(self, step: PlanStep, running: bool) -> None:
        if step.kind in PURE_KINDS:
            return  # instantaneous: not worth a search attribute update
        if running:
            self.state.current_steps.append(step.path)
        elif step.path in self.state.current_steps:
            self.state.current_steps.remove(step.path)
        self.upsert({sa.CURRENT_STEP: self.state.current_steps[-1] if self.state.current_steps else ""})

    def upsert(self, values: dict[Any, Any]) -> None:
        self.search_attributes.upsert(values)


_SKIPPED_AFTER_FAILURE: Any = object()  # on_error: continue — the step failed, the run goes on
