"""for_each: a step run once per item, with a concurrency limit, optional batches (several items in
one activity call) and, for more items than `slice_items`, child workflows of that many items each so
no single history grows past Temporal's limits. Failed items may wait for an operator's decision
(retry only those items, skip them, or fail the step)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.base import BatchItem
    from rte import temporal as sa
    from rte.errors import ErrorCategory, json_type_name
    from workflows.plan import ACTIVITY_KINDS, PURE_KINDS, OnError, PlanStep
    from workflows.run.failures import StepFailed, error
    from workflows.run.kinds import run_kind
    from workflows.state import (
        MAX_ITEM_RECORDS,
        ErrorInfo,
        ForEachSlice,
        ItemRecord,
        ItemsProgress,
        StepStatus,
        bounded,
    )

if TYPE_CHECKING:
    from workflows.run.run import Run

MAX_CHILDREN_IN_FLIGHT = 4
# Search attribute upserts for progress are throttled to one per this much workflow time.
PROGRESS_UPSERT_INTERVAL_S = 1.0


async def run_for_each(run: Run, step: PlanStep, scope: dict[str, Any]) -> list[Any]:
    assert step.for_each is not None
    items = await run.evaluate_or_fail(step, step.for_each.items, scope)
    if not isinstance(items, list):
        raise StepFailed(
            error(ErrorCategory.EXPRESSION, f"for_each.items must be an array, got {json_type_name(items)}")
        )
    state = run.state.steps[step.path]
    state.items = ItemsProgress(total=len(items))
    run.state.items_total += len(items)
    run.upsert({sa.ITEMS_TOTAL: run.state.items_total})
    concurrency = step.for_each.concurrency
    sliced = len(items) > run.input.config.slice_items and step.kind not in PURE_KINDS
    if sliced:
        records = await _run_slices(run, step, scope, items, concurrency)
    else:
        records = await run_items(run, step, scope, items, 0, concurrency)
    while failed := [record for record in records if record.status == "failed"]:
        first = failed[0].error
        message = f"{len(failed)} of {len(items)} items failed; item {failed[0].index}: {first.message if first else ''}"
        failure = error(first.category if first else "internal", message, item_index=failed[0].index)
        mode = run.on_error(step)
        if mode == OnError.CONTINUE:
            break
        if mode != OnError.PAUSE or sliced:
            raise StepFailed(failure)
        failure.step_path = step.path
        state.error = failure
        decision = await run.await_decision(step, state, failure, [record.index for record in failed])
        if decision.action == "fail":
            raise StepFailed(failure, decided=True)
        if decision.action == "skip":
            for record in failed:
                record.status, record.output = "skipped", decision.output
            continue
        # retry: only the failed items run again; the ones that succeeded keep their outputs
        retried = run.retried(step, decision, None)
        state.items.failed -= len(failed)
        run.state.items_processed -= len(failed)
        state.error = None
        again = await run_items(
            run, retried, scope, items, 0, concurrency, positions=[record.index for record in failed]
        )
        for record in again:
            records[record.index] = record
    return [record.output for record in records]


async def run_items(
    run: Run,
    step: PlanStep,
    scope: dict[str, Any],
    items: list[Any],
    offset: int,
    concurrency: int,
    positions: list[int] | None = None,
) -> list[ItemRecord]:
    """Run the items (or only those at `positions`, a retry of failed items), `concurrency` at once."""
    assert step.for_each is not None
    spec = step.for_each
    slots = asyncio.Semaphore(concurrency)
    records: list[ItemRecord | None] = [None] * len(items)
    batch_size = spec.batch_size if step.kind in ACTIVITY_KINDS else 1

    def item_scope(position: int) -> dict[str, Any]:
        return {**scope, spec.item_var: items[position], spec.index_var: offset + position}

    async def one(position: int) -> None:
        async with slots:
            records[position] = await _run_item(run, step, item_scope(position), offset + position)
            item_finished(run, step, records[position])

    async def batch(start: int) -> None:
        async with slots:
            chunk = range(start, min(start + batch_size, len(items)))
            for record in await _run_batch(run, step, [(offset + p, item_scope(p)) for p in chunk]):
                records[record.index - offset] = record
                item_finished(run, step, record)

    if batch_size > 1 and positions is None:
        await asyncio.gather(*(batch(start) for start in range(0, len(items), batch_size)))
    else:
        chosen = range(len(items)) if positions is None else positions
        await asyncio.gather(*(one(position) for position in chosen))
    return [record for record in records if record is not None]


async def _run_item(run: Run, step: PlanStep, scope: dict[str, Any], index: int) -> ItemRecord:
    state = run.state.steps.get(step.path)
    await run.pause_point(step, "before", scope, index, state)
    try:
        output = await run_kind(run, step, scope, index, None)
    except StepFailed as failure:
        failure.error.item_index = index
        await run.pause_point(step, "error", {**scope, "error": failure.error.model_dump()}, index, state)
        return ItemRecord(index=index, status="failed", error=failure.error, attempts=failure.error.attempts or 1)
    await run.pause_point(step, "after", {**scope, "output": output}, index, state)
    return ItemRecord(index=index, status="completed", output=output)


async def _run_batch(run: Run, step: PlanStep, scoped: list[tuple[int, dict[str, Any]]]) -> list[ItemRecord]:
    batch: list[BatchItem] = []
    records: list[ItemRecord] = []
    for index, scope in scoped:
        try:
            batch.append(BatchItem(item_index=index, params=await run.template_or_fail(step, step.with_, scope)))
        except StepFailed as failure:
            records.append(ItemRecord(index=index, status="failed", error=failure.error))
    if batch:
        result = await run.call_activity(step, {}, None, batch=batch)
        for item in result.items or []:
            records.append(
                ItemRecord(
                    index=item.item_index,
                    status="completed" if item.ok else "failed",
                    output=item.output,
                    error=ErrorInfo.model_validate(item.error) if item.error else None,
                    attempts=item.attempts,
                )
            )
    return sorted(records, key=lambda record: record.index)


def item_finished(run: Run, step: PlanStep, record: ItemRecord | None) -> None:
    state = run.state.steps[step.path]
    if record is None or state.items is None:
        return
    if record.status == "completed":
        state.items.completed += 1
    else:
        state.items.failed += 1
        run.state.error_count += 1
    run.state.items_processed += 1
    same_status = [sample for sample in state.item_samples if sample.status == record.status]
    if len(same_status) < MAX_ITEM_RECORDS // 2:
        state.item_samples.append(record.model_copy(update={"output": bounded(record.output, 2048)}))
    now = workflow.now().timestamp()
    finished = state.items.completed + state.items.failed == state.items.total
    if finished or now - run.last_progress_upsert >= PROGRESS_UPSERT_INTERVAL_S:
        run.last_progress_upsert = now
        run.upsert({sa.ITEMS_PROCESSED: run.state.items_processed, sa.ERROR_COUNT: run.state.error_count})


async def _run_slices(
    run: Run, step: PlanStep, scope: dict[str, Any], items: list[Any], concurrency: int
) -> list[ItemRecord]:
    """Run a large for_each as child workflows of `slice_items` items each; the step's concurrency
    is shared among the children in flight, so it holds across them."""
    info = workflow.info()
    size = run.input.config.slice_items
    in_flight = min(MAX_CHILDREN_IN_FLIGHT, concurrency)
    per_child = max(1, concurrency // in_flight)
    children = asyncio.Semaphore(in_flight)
    starts = list(range(0, len(items), size))
    results: list[list[ItemRecord]] = [[] for _ in starts]

    async def child(number: int, start: int) -> None:
        async with children:
            piece = ForEachSlice(
                step_path=step.path, offset=start, items=items[start : start + size], scope=scope, concurrency=per_child
            )
            # Slices do not debug: their parent's debugger is the one operators talk to.
            config = run.input.config.model_copy(update={"debug": False, "breakpoints": []})
            child_input = run.input.model_copy(update={"trigger": "child", "slice": piece, "config": config})
            try:
                records = await workflow.execute_child_workflow(
                    "RunPlan",  # the same interpreter runs each slice
                    child_input,
                    id=slice_id(info.workflow_id, step.path, number),
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(sa.TRIGGER_TYPE, "child"),
                            SearchAttributePair(sa.PARENT_EXECUTION, info.workflow_id),
                            SearchAttributePair(sa.DEFINITION_ID, run.plan.definition_id),
                        ]
                    ),
                    result_type=list[ItemRecord],
                )
            except ChildWorkflowError as failure:
                raise StepFailed(
                    error(
                        ErrorCategory.INTERNAL, f"slice {number} of step '{step.id}' failed: {failure.cause or failure}"
                    )
                ) from None
            results[number] = records
            for record in records:
                item_finished(run, step, record)

    await asyncio.gather(*(child(number, start) for number, start in enumerate(starts)))
    return [record for records in results for record in records]


def slice_id(execution_id: str, step_path: str, number: int) -> str:
    """The workflow id of a for_each slice (the API reads slices back by it)."""
    return f"{execution_id}/{step_path}/slice-{number}"


async def run_slice(run: Run, piece: ForEachSlice) -> list[ItemRecord]:
    step = next(step for step in run.plan.walk() if step.path == piece.step_path)
    state = run.state.steps[step.path]
    state.status, state.items = StepStatus.RUNNING, ItemsProgress(total=len(piece.items))
    return await run_items(run, step, piece.scope, piece.items, piece.offset, piece.concurrency)
