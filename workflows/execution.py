"""How one execution runs its plan: blocks, steps, for_each items and the kinds of step.

This module runs inside the Temporal workflow sandbox, so it only uses deterministic APIs
(`workflow.now`, `workflow.sleep`, activities); everything it imports is passed through.
`Run` holds the execution's state; each step kind has one small handler, dispatched by `run_kind`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.base import BatchItem, StepRequest, StepResult
    from rte import temporal as sa
    from rte.errors import EngineError, ErrorCategory
    from workflows.debugger import Boundary, Debugger
    from workflows.durations import parse_duration
    from workflows.expressions import evaluate, evaluate_template, truthy
    from workflows.plan import ACTIVITY_KINDS, PURE_KINDS, OnError, PlanBlock, PlanStep, RetrySpec, StepKind
    from workflows.state import (
        MAX_ITEM_RECORDS,
        ApprovalDecision,
        ApprovalRequest,
        ErrorInfo,
        ExecutionInput,
        ExecutionState,
        ForEachSlice,
        ItemRecord,
        ItemsProgress,
        RecoveryDecision,
        RecoveryRecord,
        StepState,
        StepStatus,
        bounded,
    )

# A for_each over more items than this runs its items in child workflows of this many items each,
# so no single history grows past Temporal's limits.
CHILD_SLICE_ITEMS = 1_000
MAX_CHILDREN_IN_FLIGHT = 4
# Search attribute upserts for progress are throttled to one per this much workflow time.
PROGRESS_UPSERT_INTERVAL_S = 1.0
CHECKPOINT_TIMER_S = 0.001
# The trail (step paths in start order) keeps this many of the latest starts.
MAX_TRAIL = 10_000


MAX_FAILED_ITEMS_LISTED = 1_000
_NATIVE: Any = object()  # pause_point's marker: a native step previews its input from `with`


class StepFailed(Exception):
    def __init__(self, error: ErrorInfo, decided: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.decided = decided  # an operator already chose to fail it: do not pause again


def _error(category: ErrorCategory | str, message: str, **fields: Any) -> ErrorInfo:
    return ErrorInfo(category=str(category), message=message, **fields)


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
            definition_version=self.plan.version,
            plan_hash=self.plan.hash,
            trigger=run_input.trigger,
            started_at=workflow.now(),
            params=bounded(run_input.params),
        )
        self.results: dict[str, Any] = {}  # step id → output of completed steps
        self.switch_choices: dict[str, str] = {}  # switch step id → chosen case name
        self.gates = _switch_gates(self.plan.root)
        self.approvals: dict[str, ApprovalDecision] = {}  # approval key → decision given
        self.waiting_approvals: dict[str, ApprovalRequest] = {}
        self.trail: list[str] = []  # step paths in the order they started (a step in a loop repeats)
        concurrency = run_input.config.max_concurrency or self.plan.max_concurrency
        self.step_slots = asyncio.Semaphore(concurrency)
        self._last_progress_upsert = 0.0
        self._pending_upserts: dict[Any, Any] = {}
        self._upserted: dict[str, Any] = {}  # search attribute name → last value sent
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

    # ----------------------------------------------------------------------------- blocks
    async def run_block(self, block: PlanBlock) -> None:
        if block.mode != "dag":
            raise StepFailed(_error(ErrorCategory.CONFIGURATION, "sequence blocks are not supported yet"))
        done = {step.id: asyncio.Event() for step in block.steps}
        tasks = [asyncio.create_task(self._run_when_ready(step, done)) for step in block.steps]
        try:
            pending = set(tasks)
            while pending:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for task in finished:
                    if task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()

    async def _run_when_ready(self, step: PlanStep, done: dict[str, asyncio.Event]) -> None:
        try:
            for need in step.needs:
                await done[need].wait()
            await self.run_step(step)
        finally:
            done[step.id].set()

    # ------------------------------------------------------------------------------ steps
    async def run_step(self, step: PlanStep) -> None:
        state = self.state.steps[step.path]
        if self._reuse(step, state):
            return
        reason = self._skip_reason(step)
        scope = self.scope_for(step) if reason is None else {}
        if reason is None and step.if_:
            condition = self._evaluate_or_fail(step, step.if_, scope)
            if not truthy(condition):
                reason = "its condition is false"
        if reason is not None:
            state.status, state.skipped_reason = StepStatus.SKIPPED, reason
            state.ended_at = workflow.now()
            return
        state.status, state.started_at = StepStatus.RUNNING, workflow.now()
        self.record_start(step)
        await self.pause_point(step, "before", scope, None, state)
        self.set_current(step, running=True)
        while True:
            try:
                output = await self._execute(step, scope, state)
                break
            except StepFailed as failure:
                failure.error.step_path = failure.error.step_path or step.path
                state.status, state.error, state.ended_at = StepStatus.FAILED, failure.error, workflow.now()
                self.state.error_count += 1
                self.upsert({sa.ERROR_COUNT: self.state.error_count})
                await self.pause_point(step, "error", scope, None, state)
                mode = self._on_error(step)
                if mode == OnError.PAUSE and not failure.decided:
                    decision = await self.await_decision(step, state, failure.error)
                    if decision.action == "retry":
                        step = self._retried(step, decision, None)
                        state.status, state.error, state.ended_at = StepStatus.RUNNING, None, None
                        continue
                    if decision.action == "skip":
                        output = decision.output
                        break
                self.set_current(step, running=False)
                if mode == OnError.CONTINUE:
                    return
                raise
        self.results[step.id] = output
        state.status, state.output, state.ended_at = StepStatus.COMPLETED, bounded(output), workflow.now()
        self.set_current(step, running=False)
        await self.pause_point(step, "after", {**scope, "output": output}, None, state)

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
            next_input = self._preview_input(step, scope) if when == "before" else None
        here = Boundary(step, when, scope, item, next_input, state)
        await self.debugger.boundary(here)
        if here.input_edited and task_input is _NATIVE:
            self.input_overrides[approval_key(step.path, item)] = here.next_input
        return here

    def _preview_input(self, step: PlanStep, scope: dict[str, Any]) -> Any:
        """The input the step is about to receive (its `with`, evaluated), for the paused view."""
        if step.kind not in ACTIVITY_KINDS or (
            step.for_each and not any(k in scope for k in ("item", step.for_each.item_var))
        ):
            return None
        try:
            return evaluate_template(step.with_, scope)
        except EngineError:
            return None

    async def await_decision(
        self, step: PlanStep, state: StepState, error: ErrorInfo, failed_items: list[int] | None = None
    ) -> RecoveryDecision:
        """on_error: pause — wait (durably) for an operator to retry, skip or fail the step."""
        self.awaiting[step.path] = error
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

    def _retried(self, step: PlanStep, decision: RecoveryDecision, item: int | None) -> PlanStep:
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

    async def _execute(self, step: PlanStep, scope: dict[str, Any], state: StepState) -> Any:
        if step.for_each:
            return await self.run_for_each(step, scope)
        return await self.run_kind(step, scope, None, state)

    def _on_error(self, step: PlanStep) -> OnError:
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

    def _evaluate_or_fail(
        self, step: PlanStep, program: str, scope: dict[str, Any], template: bool = False
    ) -> Any:
        try:
            return evaluate_template(program, scope) if template else evaluate(program, scope)
        except EngineError as error:
            raise StepFailed(
                _error(error.category, error.message, step_path=step.path, details=error.details)
            ) from None

    # -------------------------------------------------------------------------- for_each
    async def run_for_each(self, step: PlanStep, scope: dict[str, Any]) -> list[Any]:
        assert step.for_each is not None
        items = self._evaluate_or_fail(step, step.for_each.items, scope)
        if not isinstance(items, list):
            raise StepFailed(
                _error(
                    ErrorCategory.EXPRESSION, f"for_each.items must be an array, got {type(items).__name__}"
                )
            )
        state = self.state.steps[step.path]
        state.items = ItemsProgress(total=len(items))
        self.state.items_total += len(items)
        self.upsert({sa.ITEMS_TOTAL: self.state.items_total})
        concurrency = step.for_each.concurrency
        if len(items) > CHILD_SLICE_ITEMS and step.kind not in PURE_KINDS:
            records = await self._run_slices(step, scope, items, concurrency)
        else:
            records = await self.run_items(step, scope, items, 0, concurrency)
        while failed := [record for record in records if record.status == "failed"]:
            first = failed[0].error
            message = f"{len(failed)} of {len(items)} items failed; item {failed[0].index}: {first.message if first else ''}"
            error = _error(first.category if first else "internal", message, item_index=failed[0].index)
            mode = self._on_error(step)
            if mode == OnError.CONTINUE:
                break
            if mode != OnError.PAUSE or len(items) > CHILD_SLICE_ITEMS:
                raise StepFailed(error)
            error.step_path = step.path
            state.error = error
            decision = await self.await_decision(step, state, error, [record.index for record in failed])
            if decision.action == "fail":
                raise StepFailed(error, decided=True)
            if decision.action == "skip":
                for record in failed:
                    record.status, record.output = "skipped", decision.output
                continue
            # retry: only the failed items run again; the ones that succeeded keep their outputs
            retried = self._retried(step, decision, None)
            state.items.failed -= len(failed)  # type: ignore[union-attr]
            self.state.items_processed -= len(failed)
            state.error = None
            again = await self.run_items(
                retried, scope, items, 0, concurrency, positions=[record.index for record in failed]
            )
            for record in again:
                records[record.index] = record
        return [record.output for record in records]

    async def run_items(
        self,
        step: PlanStep,
        scope: dict[str, Any],
        items: list[Any],
        offset: int,
        concurrency: int,
        positions: list[int] | None = None,
    ) -> list[ItemRecord]:
        """Run the items (or only those at `positions`, a retry of failed items)."""
        assert step.for_each is not None
        spec = step.for_each
        slots = asyncio.Semaphore(concurrency)
        records: list[ItemRecord | None] = [None] * len(items)
        batch_size = spec.batch_size if step.kind in ACTIVITY_KINDS else 1

        def item_scope(position: int) -> dict[str, Any]:
            return {**scope, spec.item_var: items[position], spec.index_var: offset + position}

        async def one(position: int) -> None:
            async with slots:
                records[position] = await self._run_item(step, item_scope(position), offset + position)
                self._item_finished(step, records[position])

        async def batch(start: int) -> None:
            async with slots:
                chunk = range(start, min(start + batch_size, len(items)))
                for record in await self._run_batch(step, [(offset + p, item_scope(p)) for p in chunk]):
                    records[record.index - offset] = record
                    self._item_finished(step, record)

        if batch_size > 1 and positions is None:
            await asyncio.gather(*(batch(start) for start in range(0, len(items), batch_size)))
        else:
            chosen = range(len(items)) if positions is None else positions
            await asyncio.gather(*(one(position) for position in chosen))
        return [record for record in records if record is not None]

    async def _run_item(self, step: PlanStep, scope: dict[str, Any], index: int) -> ItemRecord:
        state = self.state.steps.get(step.path)
        await self.pause_point(step, "before", scope, index, state)
        try:
            output = await self.run_kind(step, scope, index, None)
        except StepFailed as failure:
            failure.error.item_index = index
            await self.pause_point(
                step, "error", {**scope, "error": failure.error.model_dump()}, index, state
            )
            return ItemRecord(
                index=index, status="failed", error=failure.error, attempts=failure.error.attempts or 1
            )
        await self.pause_point(step, "after", {**scope, "output": output}, index, state)
        return ItemRecord(index=index, status="completed", output=output)

    async def _run_batch(self, step: PlanStep, scoped: list[tuple[int, dict[str, Any]]]) -> list[ItemRecord]:
        batch: list[BatchItem] = []
        records: list[ItemRecord] = []
        for index, scope in scoped:
            try:
                batch.append(
                    BatchItem(item_index=index, params=self._evaluate_or_fail(step, step.with_, scope, True))
                )
            except StepFailed as failure:
                records.append(ItemRecord(index=index, status="failed", error=failure.error))
        if batch:
            result = await self.call_activity(step, {}, None, batch=batch)
            for item in result.items or []:
                error = ErrorInfo.model_validate(item.error) if item.error else None
                status = "completed" if item.ok else "failed"
                records.append(
                    ItemRecord(
                        index=item.item_index,
                        status=status,
                        output=item.output,
                        error=error,
                        attempts=item.attempts,
                    )
                )
        return sorted(records, key=lambda record: record.index)

    def _item_finished(self, step: PlanStep, record: ItemRecord | None) -> None:
        state = self.state.steps[step.path]
        if record is None or state.items is None:
            return
        if record.status == "completed":
            state.items.completed += 1
        else:
            state.items.failed += 1
            self.state.error_count += 1
        self.state.items_processed += 1
        same_status = [sample for sample in state.item_samples if sample.status == record.status]
        if len(same_status) < MAX_ITEM_RECORDS // 2:
            state.item_samples.append(record.model_copy(update={"output": bounded(record.output, 2048)}))
        now = workflow.now().timestamp()
        finished = state.items.completed + state.items.failed == state.items.total
        if finished or now - self._last_progress_upsert >= PROGRESS_UPSERT_INTERVAL_S:
            self._last_progress_upsert = now
            self.upsert(
                {sa.ITEMS_PROCESSED: self.state.items_processed, sa.ERROR_COUNT: self.state.error_count}
            )

    async def _run_slices(
        self, step: PlanStep, scope: dict[str, Any], items: list[Any], concurrency: int
    ) -> list[ItemRecord]:
        """Run a large for_each as child workflows of CHILD_SLICE_ITEMS items each."""
        info = workflow.info()
        in_flight = asyncio.Semaphore(MAX_CHILDREN_IN_FLIGHT)
        per_child = (
            max(1, concurrency // MAX_CHILDREN_IN_FLIGHT)
            if concurrency >= MAX_CHILDREN_IN_FLIGHT
            else concurrency
        )
        starts = list(range(0, len(items), CHILD_SLICE_ITEMS))
        results: list[list[ItemRecord]] = [[] for _ in starts]

        async def child(number: int, start: int) -> None:
            async with in_flight:
                piece = ForEachSlice(
                    step_path=step.path,
                    offset=start,
                    items=items[start : start + CHILD_SLICE_ITEMS],
                    scope=scope,
                    concurrency=per_child,
                )
                # Slices do not debug: their parent's debugger is the one operators talk to.
                config = self.input.config.model_copy(update={"debug": False, "breakpoints": []})
                child_input = self.input.model_copy(
                    update={"trigger": "child", "slice": piece, "config": config}
                )
                try:
                    records = await workflow.execute_child_workflow(
                        "RunPlan",  # the same interpreter runs each slice
                        child_input,
                        id=f"{info.workflow_id}/{step.path}/slice-{number}",
                        search_attributes=TypedSearchAttributes(
                            [
                                SearchAttributePair(sa.TRIGGER_TYPE, "child"),
                                SearchAttributePair(sa.PARENT_EXECUTION, info.workflow_id),
                                SearchAttributePair(sa.DEFINITION_ID, self.plan.definition_id),
                            ]
                        ),
                        result_type=list[ItemRecord],
                    )
                except ChildWorkflowError as error:
                    raise StepFailed(
                        _error(
                            ErrorCategory.INTERNAL,
                            f"slice {number} of step '{step.id}' failed: {error.cause or error}",
                        )
                    ) from None
                results[number] = records
                for record in records:
                    self._item_finished(step, record)

        await asyncio.gather(*(child(number, start) for number, start in enumerate(starts)))
        return [record for records in results for record in records]

    async def run_slice(self, piece: ForEachSlice) -> list[ItemRecord]:
        step = next(step for step in self.plan.walk() if step.path == piece.step_path)
        state = self.state.steps[step.path]
        state.status, state.items = StepStatus.RUNNING, ItemsProgress(total=len(piece.items))
        return await self.run_items(step, piece.scope, piece.items, piece.offset, piece.concurrency)

    # ----------------------------------------------------------------------------- kinds
    async def run_kind(
        self, step: PlanStep, scope: dict[str, Any], item_index: int | None, state: StepState | None
    ) -> Any:
        handler = _KIND_HANDLERS.get(step.kind)
        if handler is None:
            raise StepFailed(
                _error(
                    ErrorCategory.CONFIGURATION, f"step kind '{step.kind}' is not supported by this engine"
                )
            )
        return await handler(self, step, scope, item_index, state)

    async def call_activity(
        self,
        step: PlanStep,
        params: dict[str, Any],
        item_index: int | None,
        batch: list[BatchItem] | None = None,
        *,
        local: bool | None = None,
    ) -> StepResult:
        """Run the step's activity. `local` overrides the default choice (a step marked local runs
        as a local activity unless it is one of many for_each items in flight)."""
        info = workflow.info()
        retry = step.retry or RetrySpec(max_attempts=1)
        request = StepRequest(
            execution_id=info.workflow_id,
            run_id=info.run_id,
            definition_id=self.plan.definition_id,
            step_path=step.path,
            kind=step.kind.value,
            params=params,
            item_index=item_index,
            connection=step.connection,
            timeout_s=step.timeout_s,
            max_attempts=retry.max_attempts,
            batch=batch,
        )
        activity_id = step.path if item_index is None else f"{step.path}[{item_index}]"
        if batch:
            activity_id = f"{step.path}[{batch[0].item_index}..{batch[-1].item_index}]"
        timeout = timedelta(seconds=step.timeout_s or 300)
        policy = RetryPolicy(
            initial_interval=timedelta(seconds=retry.initial_interval_s),
            backoff_coefficient=retry.backoff,
            maximum_interval=timedelta(seconds=retry.max_interval_s),
            maximum_attempts=1 if batch else retry.max_attempts,  # a batch retries its items itself
            non_retryable_error_types=list(retry.non_retryable),
        )
        activity_name = "rte.batch" if batch else f"rte.{step.kind.value}"
        # for_each items run as regular activities: many local activities in flight keep the
        # workflow task open, so their checkpoints would stall the loop.
        if local is None:
            local = step.local and not batch and item_index is None
        if local:
            try:
                result = await workflow.execute_local_activity(
                    activity_name,
                    request,
                    activity_id=activity_id,
                    start_to_close_timeout=timeout,
                    retry_policy=policy,
                    result_type=StepResult,
                )
            except (ActivityError, ApplicationError, TemporalTimeoutError) as error:
                # A local activity's failure may arrive unwrapped (no ActivityError around it).
                await checkpoint()
                raise StepFailed(_activity_error(error, step, item_index)) from None
            # No checkpoint after a success: a timer costs about a second on some servers, which
            # would make local slower than regular. Local steps are therefore opt-in (or safe GETs)
            # and may run again if the worker dies before the workflow task completes.
            return result
        try:
            batch_timeout = timeout * len(batch) if batch else timeout
            return await workflow.execute_activity(
                activity_name,
                request,
                activity_id=activity_id,
                start_to_close_timeout=batch_timeout,
                retry_policy=policy,
                result_type=StepResult,
                heartbeat_timeout=timeout if batch else None,
            )
        except ActivityError as error:
            raise StepFailed(_activity_error(error, step, item_index)) from None

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
        """Queue search attribute values; one upsert per activation carries whatever changed.

        A step ending and the next one starting happen in the same activation: coalescing saves a
        history event and a visibility write per step.
        """
        if self.input.slice is not None:
            return  # progress is reported by the parent
        if not self._pending_upserts:
            asyncio.get_running_loop().call_soon(self._flush_upserts)
        self._pending_upserts.update(values)

    def _flush_upserts(self) -> None:
        changed = {
            key: value
            for key, value in self._pending_upserts.items()
            if self._upserted.get(key.name) != value
        }
        self._pending_upserts.clear()
        if changed:
            workflow.upsert_search_attributes([key.value_set(value) for key, value in changed.items()])
            self._upserted.update({key.name: value for key, value in changed.items()})


async def checkpoint() -> None:
    """Make the worker record a local activity's outcome in history before going on.

    A local activity's outcome is only written when the workflow task completes. When a local step
    fails and the failure ends the execution in the same task, a later replay (a query on the
    closed execution) can miss that outcome; a 1 ms timer ends the task first. Timers are coarse on
    some servers (about a second on the dev server), so this is used on failure only.
    """
    await workflow.sleep(CHECKPOINT_TIMER_S)


def _activity_error(error: Exception, step: PlanStep, item_index: int | None) -> ErrorInfo:
    cause = error.cause if isinstance(error, ActivityError) else error
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        return _error(
            cause.type or ErrorCategory.INTERNAL,
            cause.message,
            retryable=not cause.non_retryable,
            step_path=step.path,
            item_index=item_index,
            attempts=details.get("attempt"),
            details=details.get("details") or {},
        )
    if isinstance(cause, TemporalTimeoutError):
        limit = f" of {step.timeout_s:g} s" if step.timeout_s else ""
        return _error(
            ErrorCategory.TIMEOUT,
            f"step '{step.id}' ran past its timeout{limit}",
            retryable=True,
            step_path=step.path,
            item_index=item_index,
        )
    return _error(ErrorCategory.INTERNAL, str(cause or error), step_path=step.path, item_index=item_index)


def _switch_gates(block: PlanBlock) -> dict[str, tuple[str, frozenset[str]]]:
    """Step id → (switch id, names of the cases that enable it), for steps a DAG switch gates."""
    gates: dict[str, tuple[str, set[str]]] = {}
    if block.mode != "dag":
        return {}
    for step in block.steps:
        if step.kind != StepKind.SWITCH:
            continue
        for case in step.cases:
            for target in (t.strip() for t in case.then.split(",")):
                if target and target not in ("continue", "exit", "end"):
                    gates.setdefault(target, (step.id, set()))[1].add(case.name)
    return {target: (switch, frozenset(cases)) for target, (switch, cases) in gates.items()}


# ------------------------------------------------------------------------------- handlers
KindHandler = Callable[[Run, PlanStep, dict[str, Any], int | None, StepState | None], Awaitable[Any]]


async def _set(
    run: Run, step: PlanStep, scope: dict[str, Any], item: int | None, state: StepState | None
) -> Any:
    return run._evaluate_or_fail(step, step.with_, scope, template=True)


async def _transform(
    run: Run, step: PlanStep, scope: dict[str, Any], item: int | None, state: StepState | None
) -> Any:
    data = (
        run._evaluate_or_fail(step, step.with_["input"], scope, template=True)
        if "input" in step.with_
        else scope
    )
    return run._evaluate_or_fail(step, str(step.with_.get("jq", ".")), data)


async def _switch(
    run: Run, step: PlanStep, scope: dict[str, Any], item: int | None, state: StepState | None
) -> Any:
    for case in step.cases:
        if case.when is None or truthy(run._evaluate_or_fail(step, case.when, scope)):
            run.switch_choices[step.id] = case.name
            return {"branch": case.name}
    run.switch_choices[step.id] = ""
    return {"branch": None}


async def _activity(
    run: Run, step: PlanStep, scope: dict[str, Any], item: int | None, state: StepState | None
) -> Any:
    overridden, params = run.take_input_override(step, item)
    if not overridden:
        params = run._evaluate_or_fail(step, step.with_, scope, template=True)
    if state is not None:
        state.input = bounded(params)
    result = await run.call_activity(step, params, item)
    if state is not None:
        state.attempts = int(result.metrics.get("attempt", 1))
        state.metrics = result.metrics
    return result.output


async def _delay(
    run: Run, step: PlanStep, scope: dict[str, Any], item: int | None, state: StepState | None
) -> Any:
    params = run._evaluate_or_fail(step, step.with_, scope, template=True)
    try:
        seconds = parse_duration(params.get("duration"))
    except (TypeError, ValueError) as error:
        raise StepFailed(_error(ErrorCategory.VALIDATION, f"delay: {error}")) from None
    await workflow.sleep(seconds)
    return {"slept_s": seconds}


async def _approval(
    run: Run, step: PlanStep, scope: dict[str, Any], item: int | None, state: StepState | None
) -> Any:
    params = run._evaluate_or_fail(step, step.with_, scope, template=True)
    timeout_s = parse_duration(params["timeout"]) if params.get("timeout") else None
    key = approval_key(step.path, item)
    request = ApprovalRequest(
        message=params.get("message"),
        approvers=list(params.get("approvers") or []),
        requested_at=workflow.now(),
        timeout_s=timeout_s,
    )
    run.waiting_approvals[key] = request
    if state is not None:
        state.status, state.approval = StepStatus.WAITING, request
    try:
        await workflow.wait_condition(lambda: key in run.approvals, timeout=timeout_s)
    except TimeoutError:
        raise StepFailed(
            _error(ErrorCategory.TIMEOUT, f"no decision within {timeout_s:g} s", step_path=step.path)
        ) from None
    finally:
        run.waiting_approvals.pop(key, None)
        if state is not None and state.status == StepStatus.WAITING:
            state.status = StepStatus.RUNNING
    decision = run.approvals[key]
    output = {
        "approved": decision.approved,
        "by": decision.by,
        "comment": decision.comment,
        "payload": decision.payload,
        "decided_at": workflow.now().isoformat(),
    }
    if not decision.approved:
        raise StepFailed(
            _error(
                ErrorCategory.REJECTED,
                f"rejected by {decision.by}" + (f": {decision.comment}" if decision.comment else ""),
                details=output,
            )
        )
    return output


def approval_key(step_path: str, item_index: int | None) -> str:
    return step_path if item_index is None else f"{step_path}[{item_index}]"


_KIND_HANDLERS: dict[StepKind, KindHandler] = {
    StepKind.SET: _set,
    StepKind.TRANSFORM: _transform,
    StepKind.SWITCH: _switch,
    StepKind.HTTP: _activity,
    StepKind.AI: _activity,
    StepKind.SCRIPT: _activity,
    StepKind.PYTHON: _activity,
    StepKind.DELAY: _delay,
    StepKind.APPROVAL: _approval,
}
