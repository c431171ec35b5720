"""Executions: history (list, statistics, export, bulk actions), detail, payloads, approvals, control.

Everything is read from Temporal — visibility for lists and counts, the start event for the plan and
parameters, the interpreter's `state` query for step progress, activity events for full payloads —
so the API keeps no state of its own.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.history.v1 import HistoryEvent, StartChildWorkflowExecutionInitiatedEventAttributes
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DeleteWorkflowExecutionRequest,
    DescribeTaskQueueRequest,
    GetWorkflowExecutionHistoryRequest,
)
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from activities.base import StepRequest, StepResult
from activities.expression import evaluate_guarded
from api import visibility
from api.bulk import bulk_targets, run_bulk
from api.critical_path import actual_critical_path
from api.deps import Offload, OffloadDep, OperatorKey, SettingsDep, StoreDep, TemporalClientDep, ViewerKey
from api.errors import Problem, query_failed_problem, rpc_problem, stuck_problem
from api.models import (
    ActionOut,
    BulkRequest,
    BulkResult,
    DataFlowEdge,
    DayCount,
    DecisionIn,
    DecisionOut,
    ExecutionDetail,
    ExecutionFilter,
    ExecutionPage,
    ExecutionStats,
    ExecutionSummary,
    ItemSample,
    ItemsOut,
    StepDetail,
    TerminateIn,
    problems,
)
from rte import temporal as sa
from rte.claim_check import (
    PayloadNotFound,
    PayloadStore,
    contains_reference,
    offload_model,
    resolve,
    resolved_size,
    serialized_size,
)
from rte.config import Settings
from rte.executions import start_execution
from rte.store.api_keys import ApiKeyInfo
from workflows.expressions import ExpressionRequest
from workflows.plan import ACTIVITY_KINDS, Plan, PlanStep, StepKind
from workflows.state import ApprovalDecision, ExecutionInput, ExecutionState, StepState

router = APIRouter(
    prefix="/executions", tags=["executions"], responses=problems(401, 403, 404, 413, 422, 400, 409, 503)
)

ExecutionId = Annotated[str, Path(min_length=1, max_length=1000, examples=["greet-3f2a9c1b7d4e"])]
RunId = Annotated[str | None, Query(max_length=100, description="A specific run; default: the latest.")]
Filters = Annotated[ExecutionFilter, Query()]

QUERY_TIMEOUT = timedelta(seconds=5)
UPDATE_TIMEOUT = timedelta(seconds=5)
MAX_UPDATE_BYTES = 1_500_000  # under Temporal's 2 MB per payload, with room for the envelope
RPC_TIMEOUT = timedelta(seconds=10)
STATS_SAMPLE = 5_000
# A worker long-polls for about a minute; one seen more recently than this is taken to be alive.
POLLER_FRESH = timedelta(seconds=90)
EXPORT_COLUMNS = (
    "execution_id",
    "run_id",
    "definition_id",
    "definition_version",
    "trigger",
    "status",
    "start_time",
    "close_time",
    "duration_ms",
    "items_processed",
    "error_count",
    "current_step",
    "temporal_ui_url",
)


# History ----------------------------------------------------------------------------------------


@router.get("", response_model=ExecutionPage)
async def list_executions(
    filters: Filters,
    client: TemporalClientDep,
    settings: SettingsDep,
    _: ViewerKey,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=8192, description="`next_cursor` of the previous page.")
    ] = None,
) -> ExecutionPage:
    """Executions, newest first, filtered and paged with an opaque cursor (child executions hidden)."""
    query = visibility.build_query(filters)
    page, token = await visibility.list_page(
        client, query, page_size, visibility.decode_cursor(query, cursor)
    )
    return ExecutionPage(
        items=[visibility.summary(info, settings) for info in page],
        next_cursor=visibility.encode_cursor(query, token),
    )


@router.get("/stats", response_model=ExecutionStats)
async def execution_stats(
    filters: Filters, client: TemporalClientDep, settings: SettingsDep, _: ViewerKey
) -> ExecutionStats:
    """Counts by status, success rate, average and p95 duration, items processed and a daily series."""
    query = visibility.build_query(filters)
    try:
        counted = await client.count_workflows(f"{query} GROUP BY ExecutionStatus", rpc_timeout=RPC_TIMEOUT)
    except RPCError as error:
        raise rpc_problem(error, "counting executions failed") from None
    by_status: dict[str, int] = {}
    for group in counted.groups:
        name = visibility.STATUS_FROM_TEMPORAL.get(
            str(group.group_values[0]), str(group.group_values[0]).lower()
        )
        by_status[name] = by_status.get(name, 0) + group.count
    durations: list[float] = []
    items = 0
    days: dict[str, Counter[str]] = defaultdict(Counter)
    sampled = 0
    async for info in visibility.iterate(client, query, STATS_SAMPLE):
        sampled += 1
        row = visibility.summary(info, settings)
        items += row.items_processed or 0
        if row.duration_ms is not None:
            durations.append(row.duration_ms)
        if row.start_time is not None:
            days[row.start_time.date().isoformat()][row.status] += 1
    closed = sum(count for name, count in by_status.items() if name != "running")
    durations.sort()
    return ExecutionStats(
        total=counted.count,
        by_status=by_status,
        success_rate=by_status.get("completed", 0) / closed if closed else None,
        average_duration_ms=sum(durations) / len(durations) if durations else None,
        p95_duration_ms=durations[max(0, math.ceil(0.95 * len(durations)) - 1)] if durations else None,
        items_processed=items,
        per_day=[
            DayCount(date=day, total=sum(counts.values()), by_status=dict(counts))  # type: ignore[arg-type]
            for day, counts in sorted(days.items())
        ],
        sampled=sampled,
        sample_complete=sampled >= counted.count,
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The filtered list, streamed.",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array"}},
            },
        }
    },
)
async def export_executions(
    filters: Filters,
    client: TemporalClientDep,
    settings: SettingsDep,
    _: ViewerKey,
    format: Literal["csv", "json"] = "csv",
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> StreamingResponse:
    """Export the filtered list as CSV or JSON, streamed page by page."""
    query = visibility.build_query(filters)
    # The first page is read before the response starts, so a failure is still a proper problem.
    first, token = await visibility.list_page(client, query, min(1000, limit))

    async def rows() -> AsyncIterator[ExecutionSummary]:
        sent = 0
        page, next_token = first, token
        while True:
            for info in page:
                if sent >= limit:
                    return
                sent += 1
                yield visibility.summary(info, settings)
            if next_token is None or sent >= limit:
                return
            page, next_token = await visibility.list_page(client, query, min(1000, limit - sent), next_token)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {"Content-Disposition": f'attachment; filename="executions-{stamp}.{format}"'}
    if format == "json":
        return StreamingResponse(_json_stream(rows()), media_type="application/json", headers=headers)
    return StreamingResponse(_csv_stream(rows()), media_type="text/csv; charset=utf-8", headers=headers)


async def _json_stream(rows: AsyncIterator[ExecutionSummary]) -> AsyncIterator[str]:
    yield "["
    separator = ""
    async for row in rows:
        yield separator + row.model_dump_json()
        separator = ","
    yield "]\n"


async def _csv_stream(rows: AsyncIterator[ExecutionSummary]) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    async for row in rows:
        data = row.model_dump(mode="json")
        writer.writerow(["" if data[column] is None else data[column] for column in EXPORT_COLUMNS])
        if buffer.tell() > 16_384:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


@router.post("/bulk", response_model=BulkResult)
async def bulk_action(
    body: BulkRequest, client: TemporalClientDep, settings: SettingsDep, key: OperatorKey
) -> BulkResult:
    """Cancel, terminate, retry or delete executions given by ids or by a filter; answers per execution."""
    ids = await bulk_targets(client, body.ids, body.filter, body.limit)
    reason = body.reason or f"bulk {body.action} by '{key.name}'"
    action: Callable[[str], Awaitable[ActionOut]] = {
        "cancel": lambda execution_id: _cancel(client, execution_id),
        "terminate": lambda execution_id: _terminate(client, execution_id, reason),
        "retry": lambda execution_id: _rerun(client, settings, execution_id),
        "delete": lambda execution_id: _delete(client, execution_id),
    }[body.action]
    return await run_bulk(body.action, ids, action)


# Detail -----------------------------------------------------------------------------------------


@router.get("/{execution_id}", response_model=ExecutionDetail)
async def get_execution(
    execution_id: ExecutionId,
    client: TemporalClientDep,
    settings: SettingsDep,
    store: StoreDep,
    _: ViewerKey,
    run_id: RunId = None,
) -> ExecutionDetail:
    """One execution: per step status, attempts, timings, bounded input/output, data flow, critical path."""
    description = await _describe(client, execution_id, run_id)
    run_input = await _start_input(client, execution_id, description.run_id)
    warnings: list[str] = []
    state = None
    try:
        state = await _state(client, execution_id, description.run_id)
    except Problem as problem:
        warnings.append(f"step progress is unavailable: {problem.detail}")
    summary = _summary(description, settings)
    plan = run_input.plan
    steps = [_step_detail(step, state, execution_id) for step in plan.walk()]
    sizes = {step.path: step.output_bytes for step in steps}
    flow = [
        DataFlowEdge(
            source=_sibling_path(step, read), target=step.path, bytes=sizes.get(_sibling_path(step, read))
        )
        for step in plan.walk()
        for read in step.reads
    ]
    critical = actual_critical_path(plan, state, datetime.now(UTC)) if state else []
    return ExecutionDetail(
        **summary.model_dump(),
        params=state.params if state else run_input.params,
        output=await _resolved(state.output, store.payloads) if state else None,
        error=state.error.model_dump(mode="json") if state and state.error else None,
        waiting_approvals=[step.path for step in steps if step.status == "waiting"],
        steps=steps,
        data_flow=flow,
        critical_path=critical,
        warnings=warnings,
    )


@router.get(
    "/{execution_id}/steps/{step_path:path}/payload",
    responses={200: {"description": "The full JSON value.", "content": {"application/json": {"schema": {}}}}},
)
async def get_payload(
    execution_id: ExecutionId,
    step_path: Annotated[str, Path(min_length=1, max_length=1000, examples=["greet/hello"])],
    client: TemporalClientDep,
    store: StoreDep,
    _: ViewerKey,
    part: Literal["output", "input"] = "output",
    item: Annotated[int | None, Query(ge=0, description="One for_each item.")] = None,
    run_id: RunId = None,
) -> JSONResponse:
    """The full input or output of a step (or of one for_each item), not truncated."""
    description = await _describe(client, execution_id, run_id)
    run_input = await _start_input(client, execution_id, description.run_id)
    payloads = _Payloads(client, execution_id, description.run_id, run_input, store.payloads)
    step = payloads.step(step_path)
    if item is not None and step.for_each is None:
        raise Problem(404, "Not found", f"step '{step.path}' has no for_each, so it has no item {item}")
    value = await payloads.full(step, part, item)
    return JSONResponse(value)


# Approvals and control --------------------------------------------------------------------------


@router.post("/{execution_id}/approve", response_model=DecisionOut)
async def approve(
    execution_id: ExecutionId,
    body: DecisionIn,
    client: TemporalClientDep,
    offload: OffloadDep,
    key: OperatorKey,
) -> DecisionOut:
    """Approve a waiting approval step."""
    return await _decide(client, execution_id, body, True, key, offload)


@router.post("/{execution_id}/reject", response_model=DecisionOut)
async def reject(
    execution_id: ExecutionId,
    body: DecisionIn,
    client: TemporalClientDep,
    offload: OffloadDep,
    key: OperatorKey,
) -> DecisionOut:
    """Reject a waiting approval step (it fails with category 'rejected')."""
    return await _decide(client, execution_id, body, False, key, offload)


@router.post("/{execution_id}/cancel", response_model=ActionOut, status_code=status.HTTP_202_ACCEPTED)
async def cancel_execution(execution_id: ExecutionId, client: TemporalClientDep, _: OperatorKey) -> ActionOut:
    """Ask a running execution to cancel (its running steps are cancelled, then it ends)."""
    return await _cancel(client, execution_id)


@router.post("/{execution_id}/terminate", response_model=ActionOut)
async def terminate_execution(
    execution_id: ExecutionId, client: TemporalClientDep, key: OperatorKey, body: TerminateIn | None = None
) -> ActionOut:
    """End a running execution at once, without cleanup."""
    reason = (body.reason if body else None) or f"terminated through the API by '{key.name}'"
    return await _terminate(client, execution_id, reason)


@router.post("/{execution_id}/rerun", response_model=ActionOut, status_code=status.HTTP_202_ACCEPTED)
async def rerun_execution(
    execution_id: ExecutionId, client: TemporalClientDep, settings: SettingsDep, _: OperatorKey
) -> ActionOut:
    """Start the execution again as a new one, with the same plan, parameters and configuration."""
    return await _rerun(client, settings, execution_id)


@router.delete("/{execution_id}", response_model=ActionOut)
async def delete_execution(execution_id: ExecutionId, client: TemporalClientDep, _: OperatorKey) -> ActionOut:
    """Delete an execution and its history from Temporal (a running one is terminated first)."""
    return await _delete(client, execution_id)


# Helpers ----------------------------------------------------------------------------------------


def _not_found(execution_id: str) -> Problem:
    return Problem(404, "Not found", f"no execution with id '{execution_id}'")


async def _describe(
    client: Client, execution_id: str, run_id: str | None = None
) -> WorkflowExecutionDescription:
    try:
        description = await client.get_workflow_handle(execution_id, run_id=run_id).describe(
            rpc_timeout=RPC_TIMEOUT
        )
    except RPCError as error:
        if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise _not_found(execution_id) from None
        raise rpc_problem(error, f"cannot describe '{execution_id}'") from None
    if description.workflow_type != sa.WORKFLOW_TYPE:
        raise _not_found(execution_id)
    return description


def _is_open(description: WorkflowExecutionDescription) -> bool:
    return description.status in (None, WorkflowExecutionStatus.RUNNING)


async def _start_input(client: Client, execution_id: str, run_id: str) -> ExecutionInput:
    request = GetWorkflowExecutionHistoryRequest(
        namespace=client.namespace,
        execution=WorkflowExecution(workflow_id=execution_id, run_id=run_id),
        maximum_page_size=1,
    )
    try:
        response = await client.workflow_service.get_workflow_execution_history(request, timeout=RPC_TIMEOUT)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise _not_found(execution_id) from None
        raise rpc_problem(error, f"cannot read '{execution_id}'") from None
    events = response.history.events
    if not events or not events[0].HasField("workflow_execution_started_event_attributes"):
        raise _not_found(execution_id)
    payloads = events[0].workflow_execution_started_event_attributes.input.payloads
    (run_input,) = await client.data_converter.decode(payloads, [ExecutionInput])
    return run_input


async def _state(client: Client, execution_id: str, run_id: str) -> ExecutionState:
    handle = client.get_workflow_handle(execution_id, run_id=run_id)
    try:
        return await handle.query("state", result_type=ExecutionState, rpc_timeout=QUERY_TIMEOUT)
    except WorkflowQueryFailedError as error:
        raise query_failed_problem(execution_id, error) from None
    except RPCError as error:
        if error.status == RPCStatusCode.DEADLINE_EXCEEDED or "deadline" in error.message.lower():
            raise _no_worker("no worker answered the state query") from None
        raise rpc_problem(error, "the state query failed") from None


def _no_worker(what: str) -> Problem:
    return Problem(
        503,
        "No worker available",
        f"{what}: no worker is polling this execution's task queue. Start one with `rte worker` "
        "(or `rte up`) and try again.",
    )


def _summary(description: WorkflowExecutionDescription, settings: Settings) -> ExecutionSummary:
    # A description carries the same execution info as a visibility listing: one mapping serves both.
    return visibility.summary(description.raw_description.workflow_execution_info, settings)


def _truncated(value: Any) -> bool:
    return isinstance(value, dict) and value.get("_truncated") is True


def _size(value: Any) -> int | None:
    if value is None:
        return None
    if _truncated(value):
        return int(value.get("size") or 0)
    if contains_reference(value):
        return resolved_size(value)  # what the step really produced, not its reference
    return len(json.dumps(value, separators=(",", ":"), default=str))


async def _resolved(value: Any, payloads: PayloadStore) -> Any:
    """A value with its payload references replaced by their content (404 when one is gone)."""
    try:
        return await resolve(value, payloads)
    except PayloadNotFound as error:
        raise Problem(404, "Payload not found", error.message) from None


def _sibling_path(step: PlanStep, step_id: str) -> str:
    return f"{step.path.rsplit('/', 1)[0]}/{step_id}"


def _step_detail(step: PlanStep, state: ExecutionState | None, execution_id: str) -> StepDetail:
    found: StepState | None = state.steps.get(step.path) if state else None
    payload_url = f"/executions/{execution_id}/steps/{step.path}/payload"
    common: dict[str, Any] = {
        "id": step.id,
        "path": step.path,
        "kind": step.kind.value,
        "name": step.name,
        "connection": step.connection,
        "needs": [_sibling_path(step, need) for need in step.needs],
        "payload_url": payload_url,
    }
    if found is None:
        return StepDetail(**common, status="unknown", attempts=0)
    duration = None
    if found.started_at and found.ended_at:
        duration = (found.ended_at - found.started_at).total_seconds() * 1000
    return StepDetail(
        **common,
        status=found.status.value,
        attempts=found.attempts,
        started_at=found.started_at,
        ended_at=found.ended_at,
        duration_ms=duration,
        skipped_reason=found.skipped_reason,
        input=found.input,
        output=found.output,
        # A value held by reference (rte/claim_check.py) is shown as the reference: fetch payload_url.
        input_truncated=_truncated(found.input) or contains_reference(found.input),
        output_truncated=_truncated(found.output) or contains_reference(found.output),
        output_bytes=_size(found.output),
        error=found.error.model_dump(mode="json") if found.error else None,
        items=ItemsOut.model_validate(found.items.model_dump()) if found.items else None,
        item_samples=[
            ItemSample(
                index=sample.index,
                status=sample.status,
                attempts=sample.attempts,
                output=sample.output,
                error=sample.error.model_dump(mode="json") if sample.error else None,
            )
            for sample in found.item_samples
        ],
        approval=found.approval.model_dump(mode="json") if found.approval else None,
    )


_Activities = dict[str, tuple[StepRequest | None, StepResult | None]]


@dataclass(frozen=True)
class _Slice:
    """A child execution that ran items [offset, offset + count) of a large for_each."""

    workflow_id: str
    run_id: str | None
    offset: int
    count: int


class _Payloads:
    """Full step inputs and outputs: from activity events in history (the for_each slices' histories
    too), else from (or recomputed from) state; payload references resolved."""

    def __init__(
        self, client: Client, execution_id: str, run_id: str, run_input: ExecutionInput, store: PayloadStore
    ) -> None:
        self.client, self.execution_id, self.run_id, self.run_input = client, execution_id, run_id, run_input
        self.plan: Plan = run_input.plan
        self.store = store
        self._activities: _Activities | None = None
        self._slices: dict[str, list[_Slice]] = {}  # step path → its slices, when it ran in slices
        self._slice_activities: dict[str, _Activities] = {}  # slice workflow id → its activities
        self._state: ExecutionState | None = None
        self._state_error: str | None = None
        self._outputs: dict[str, Any] = {}

    def step(self, step_path: str) -> PlanStep:
        steps = self.plan.walk()
        for step in steps:
            if step.path == step_path:
                return step
        for step in steps:
            if step.id == step_path:
                return step
        known = ", ".join(step.path for step in steps[:20])
        raise Problem(
            404, "Not found", f"execution '{self.execution_id}' has no step '{step_path}' (steps: {known})"
        )

    async def full(self, step: PlanStep, part: str, item: int | None) -> Any:
        return await _resolved(await self._full(step, part, item), self.store)

    async def _full(self, step: PlanStep, part: str, item: int | None) -> Any:
        if step.kind in ACTIVITY_KINDS:
            found, value = await self._from_history(step, part, item)
            if found:
                return value
        if item is None:
            state = await self.state()
            if state is not None and step.path in state.steps:
                step_state = state.steps[step.path]
                value = step_state.output if part == "output" else step_state.input
                if not _truncated(value) and (value is not None or step_state.status.value == "completed"):
                    return value
                if part == "output" and _truncated(value):
                    recomputed, result = await self._recompute(step)
                    if recomputed:
                        return result
        else:
            state = await self.state()
            samples = state.steps[step.path].item_samples if state and step.path in state.steps else []
            for sample in samples:
                if sample.index == item and part == "output" and not _truncated(sample.output):
                    return sample.output
        what = f"the {part} of step '{step.path}'" + (f" item {item}" if item is not None else "")
        why = f" ({self._state_error})" if self._state_error else ""
        raise Problem(
            404,
            "Payload not found",
            f"{what} is not known: the step has not produced it (yet), or it is not kept in the "
            f"execution's history{why}",
        )

    async def state(self) -> ExecutionState | None:
        if self._state is None and self._state_error is None:
            try:
                self._state = await _state(self.client, self.execution_id, self.run_id)
            except Problem as problem:
                self._state_error = problem.detail
        return self._state

    async def _history(self) -> _Activities:
        """activity id → (request, result) of every activity (and local activity) in the history."""
        if self._activities is None:
            self._activities = await self._scan(self.execution_id, self.run_id, self._slices)
        return self._activities

    async def _step_activities(self, step: PlanStep, item: int | None) -> _Activities:
        """The activities of the execution, and those of the slices that ran `step` (only the one
        holding `item` when an item is asked for)."""
        found = await self._history()
        slices = [
            piece
            for piece in self._slices.get(step.path, [])
            if item is None or piece.offset <= item < piece.offset + piece.count
        ]
        if not slices:
            return found
        found = dict(found)
        for piece in slices:
            if piece.workflow_id not in self._slice_activities:
                self._slice_activities[piece.workflow_id] = await self._scan(piece.workflow_id, piece.run_id)
            found.update(self._slice_activities[piece.workflow_id])
        return found

    async def _scan(
        self, workflow_id: str, run_id: str | None, slices: dict[str, list[_Slice]] | None = None
    ) -> _Activities:
        converter = self.client.data_converter
        scheduled: dict[int, str] = {}
        found: _Activities = {}
        children: dict[int, _Slice] = {}  # initiated event id → slice (for its run id)
        handle = self.client.get_workflow_handle(workflow_id, run_id=run_id)
        event: HistoryEvent
        async for event in handle.fetch_history_events(rpc_timeout=RPC_TIMEOUT):
            if event.HasField("activity_task_scheduled_event_attributes"):
                attributes = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = attributes.activity_id
                (request,) = await converter.decode(attributes.input.payloads, [StepRequest])
                found[attributes.activity_id] = (request, None)
            elif event.HasField("activity_task_completed_event_attributes"):
                attributes_done = event.activity_task_completed_event_attributes
                activity_id = scheduled.get(attributes_done.scheduled_event_id)
                if activity_id is not None and attributes_done.result.payloads:
                    (result,) = await converter.decode(attributes_done.result.payloads, [StepResult])
                    found[activity_id] = (found.get(activity_id, (None, None))[0], result)
            elif event.HasField("marker_recorded_event_attributes"):
                marker = event.marker_recorded_event_attributes
                data, result_payloads = marker.details.get("data"), marker.details.get("result")
                if data is None or result_payloads is None or not result_payloads.payloads:
                    continue
                try:
                    (meta,) = await converter.decode(data.payloads, [dict])
                    (result,) = await converter.decode(result_payloads.payloads, [StepResult])
                except Exception:  # noqa: BLE001 - a marker that is not a local activity result
                    continue
                if isinstance(meta, dict) and meta.get("activity_id"):
                    found[str(meta["activity_id"])] = (None, result)
            elif slices is not None and event.HasField(
                "start_child_workflow_execution_initiated_event_attributes"
            ):
                piece = await self._slice_of(event.start_child_workflow_execution_initiated_event_attributes)
                if piece is not None:
                    children[event.event_id] = piece
                    slices.setdefault(piece[0], []).append(piece[1])
            elif slices is not None and event.HasField("child_workflow_execution_started_event_attributes"):
                started = event.child_workflow_execution_started_event_attributes
                if (initiated := children.get(started.initiated_event_id)) is not None:
                    step_path, piece = initiated
                    pieces = slices[step_path]
                    pieces[pieces.index(piece)] = replace(piece, run_id=started.workflow_execution.run_id)
        return found

    async def _slice_of(
        self, attributes: StartChildWorkflowExecutionInitiatedEventAttributes
    ) -> tuple[str, _Slice] | None:
        """(step path, slice) when a started child is a slice of one of this execution's for_each steps."""
        prefix = f"{self.execution_id}/"
        if not attributes.workflow_id.startswith(prefix):
            return None
        try:
            (child_input,) = await self.client.data_converter.decode(
                attributes.input.payloads, [ExecutionInput]
            )
        except Exception:  # noqa: BLE001 - a child that is not an interpreter run: not a slice
            return None
        piece = child_input.slice
        if piece is None:
            return None
        return piece.step_path, _Slice(attributes.workflow_id, None, piece.offset, len(piece.items))

    async def _from_history(self, step: PlanStep, part: str, item: int | None) -> tuple[bool, Any]:
        activities = await self._step_activities(step, item)
        per_item: dict[int, Any] = {}
        for activity_id, (request, result) in activities.items():
            base, _, suffix = activity_id.partition("[")
            if base != step.path:
                continue
            if not suffix:
                if item is None and step.for_each is None:
                    if part == "input" and request is not None:
                        return True, request.params
                    if part == "output" and result is not None:
                        return True, result.output
                continue
            if part == "input" and request is not None:
                if request.batch:
                    per_item.update({entry.item_index: entry.params for entry in request.batch})
                elif request.item_index is not None:
                    per_item[request.item_index] = request.params
            elif part == "output" and result is not None:
                if result.items:
                    per_item.update({entry.item_index: entry.output for entry in result.items if entry.ok})
                elif request is not None and request.item_index is not None:
                    per_item[request.item_index] = result.output
                elif suffix.rstrip("]").isdigit():
                    per_item[int(suffix.rstrip("]"))] = result.output
        if item is not None:
            return (True, per_item[item]) if item in per_item else (False, None)
        if step.for_each is not None and per_item:
            state = await self.state()
            total = state.steps[step.path].items.total if state and state.steps[step.path].items else None
            if total is not None and len(per_item) == total:
                return True, [per_item[index] for index in sorted(per_item)]
        return False, None

    async def _recompute(self, step: PlanStep) -> tuple[bool, Any]:
        """A pure step's output, evaluated again from the full outputs it reads (native plans only)."""
        if (
            step.kind not in (StepKind.SET, StepKind.TRANSFORM)
            or step.for_each
            or self.plan.expression_mode != "native"
        ):
            return False, None
        state = await self.state()
        steps: dict[str, Any] = {}
        for read in step.reads:
            source = self.step(_sibling_path(step, read))
            try:
                output = await self.full(source, "output", None)
            except Problem:
                return False, None
            status_value = (
                state.steps[source.path].status.value if state and source.path in state.steps else None
            )
            steps[read] = {"output": output, "status": status_value}
        scope = {"inputs": self.run_input.params, "steps": steps}
        # Evaluated in the guarded evaluator: the API never runs a user's program unbounded.
        if step.kind == StepKind.SET:
            return await _guarded(ExpressionRequest(template=step.with_, data=scope))
        data: Any = scope
        if "input" in step.with_:
            ok, data = await _guarded(ExpressionRequest(template=step.with_["input"], data=scope))
            if not ok:
                return False, None
        return await _guarded(ExpressionRequest(program=str(step.with_.get("jq", ".")), data=data))


async def _guarded(request: ExpressionRequest) -> tuple[bool, Any]:
    outcome = await evaluate_guarded(request)
    return outcome.ok, outcome.value if outcome.ok else None


async def _decide(
    client: Client, execution_id: str, body: DecisionIn, approved: bool, key: ApiKeyInfo, offload: Offload
) -> DecisionOut:
    decision = ApprovalDecision(
        step=body.step,
        item_index=body.item_index,
        approved=approved,
        by=key.name,
        comment=body.comment,
        payload=body.payload,
    )
    state = await send_update(client, execution_id, "decide_approval", decision, offload)
    return DecisionOut(
        execution_id=execution_id,
        step=body.step,
        approved=approved,
        by=key.name,
        execution_status=state.status.value,
    )


async def send_update(
    client: Client, execution_id: str, name: str, argument: BaseModel, offload: Offload | None = None
) -> ExecutionState:
    """Send a validated update; 409 with the validator's message when refused, 503 without a worker.

    With `offload`, large values in the argument travel as payload references (rte/claim_check.py);
    an argument still too large for Temporal is a 413.
    """
    if offload is not None:
        argument = await offload_model(argument, offload.payloads, offload.threshold_bytes)
    if (size := serialized_size(argument.model_dump(mode="json"))) > MAX_UPDATE_BYTES:
        raise Problem(
            413,
            "Payload Too Large",
            f"the {name} command is {size:,} bytes; Temporal carries at most {MAX_UPDATE_BYTES:,} here",
        )
    description = await _describe(client, execution_id)
    if not _is_open(description):
        raise Problem(
            409,
            "Execution closed",
            f"execution '{execution_id}' is {visibility.status_name(description.status)}",
        )
    await _require_worker(client, description)
    handle = client.get_workflow_handle(execution_id)
    try:
        # The SDK may retry the call inside rpc_timeout; the outer bound keeps the answer prompt.
        return await asyncio.wait_for(
            handle.execute_update(name, argument, result_type=ExecutionState, rpc_timeout=UPDATE_TIMEOUT),
            timeout=UPDATE_TIMEOUT.total_seconds(),
        )
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        raise Problem(409, "Refused", getattr(cause, "message", None) or str(cause or error)) from None
    except (WorkflowUpdateRPCTimeoutOrCancelledError, TimeoutError):
        raise stuck_problem(description) or _no_worker(
            f"no worker accepted the command within {UPDATE_TIMEOUT.total_seconds():g} s"
        ) from None
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise Problem(409, "Execution closed", f"execution '{execution_id}' has ended") from None
        if error.status == RPCStatusCode.DEADLINE_EXCEEDED:
            raise _no_worker("no worker accepted the command in time") from None
        raise rpc_problem(error, "the command was not delivered") from None


async def _require_worker(client: Client, description: WorkflowExecutionDescription) -> None:
    """503 at once when no worker has polled the execution's task queue recently."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=description.task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    try:
        response = await client.workflow_service.describe_task_queue(request, timeout=RPC_TIMEOUT)
    except RPCError:
        return  # cannot tell: the update's own timeout still bounds the wait
    now = datetime.now(UTC)
    alive = [
        poller
        for poller in response.pollers
        if poller.HasField("last_access_time")
        and now - poller.last_access_time.ToDatetime(tzinfo=UTC) < POLLER_FRESH
    ]
    if not alive:
        raise _no_worker(f"the decision cannot be delivered (task queue '{description.task_queue}')")


async def _cancel(client: Client, execution_id: str) -> ActionOut:
    description = await _describe(client, execution_id)
    _require_open(description, "cancel")
    try:
        await client.get_workflow_handle(execution_id).cancel(rpc_timeout=RPC_TIMEOUT)
    except RPCError as error:
        raise _control_error(execution_id, error) from None
    return ActionOut(execution_id=execution_id, message="cancellation requested")


async def _terminate(client: Client, execution_id: str, reason: str) -> ActionOut:
    description = await _describe(client, execution_id)
    _require_open(description, "terminate")
    try:
        await client.get_workflow_handle(execution_id).terminate(reason=reason, rpc_timeout=RPC_TIMEOUT)
    except RPCError as error:
        raise _control_error(execution_id, error) from None
    return ActionOut(execution_id=execution_id, message=f"terminated: {reason}")


async def _rerun(client: Client, settings: Settings, execution_id: str) -> ActionOut:
    description = await _describe(client, execution_id)
    run_input = await _start_input(client, execution_id, description.run_id)
    if run_input.slice is not None:
        raise Problem(
            409, "Not restartable", f"'{execution_id}' is a child slice of a for_each; rerun its parent"
        )
    handle = await start_execution(
        client,
        run_input.plan,
        run_input.params,
        task_queue=description.task_queue or settings.task_queue,
        step_task_queues=settings.step_task_queues(),
        trigger="retry",
        config=run_input.config,
        definition_version=description.typed_search_attributes.get(sa.DEFINITION_VERSION),
    )
    return ActionOut(
        execution_id=execution_id, message=f"started again as '{handle.id}'", new_execution_id=handle.id
    )


async def _delete(client: Client, execution_id: str) -> ActionOut:
    await _describe(client, execution_id)
    request = DeleteWorkflowExecutionRequest(
        namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=execution_id)
    )
    try:
        await client.workflow_service.delete_workflow_execution(request, timeout=RPC_TIMEOUT)
    except RPCError as error:
        raise _control_error(execution_id, error) from None
    return ActionOut(
        execution_id=execution_id,
        message="deletion requested: Temporal removes the execution and its history in the background",
    )


def _require_open(description: WorkflowExecutionDescription, verb: str) -> None:
    if not _is_open(description):
        raise Problem(
            409,
            "Execution closed",
            f"cannot {verb} '{description.id}': it is already {visibility.status_name(description.status)}",
        )


def _control_error(execution_id: str, error: RPCError) -> Problem:
    if error.status == RPCStatusCode.NOT_FOUND:
        return Problem(409, "Execution closed", f"execution '{execution_id}' has already ended or is gone")
    return rpc_problem(error, f"the request on '{execution_id}' failed")
