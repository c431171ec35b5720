"""Live monitor (viewer): an execution's state, its event stream, and a stream of every execution.

The per-execution stream wakes on Temporal's history long-poll and diffs the interpreter's `state`
query (see `api/sse.py` for the events and their resumable ids); readers of one execution in this
process share one long-poll (`rte.watch.WatchHub`), which stops with its last reader.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response
from sse_starlette import EventSourceResponse, ServerSentEvent
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from api import visibility
from api.deps import SettingsDep, StoreDep, TemporalClientDep, ViewerKey
from api.errors import Problem, query_failed_problem, rpc_problem, stuck_problem
from api.models import ExecutionFilter, ExecutionSummary
from api.sse import EVENT_NAMES, Event, View, WorkerReports, diff
from rte import temporal as sa
from rte.store import Store
from rte.watch import NoWorkerError, hub_for, read_state, worker_available
from workflows.state import ExecutionState

router = APIRouter(prefix="/executions", tags=["live monitor"])

# Keep-alive comment interval: proxies close connections that stay silent for long.
PING_INTERVAL_S: float = 15
# A state query that takes longer than this means no worker is answering.
STATE_QUERY_TIMEOUT = timedelta(seconds=5)
# Temporal visibility has no long-poll or change feed, so the dashboard stream re-lists a bounded
# window of executions at this interval (per-execution streams never poll: they long-poll history).
DASHBOARD_REFRESH_S: float = 1.0

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such execution (problem+json)"},
    503: {"description": "No worker available to answer, or Temporal unreachable (problem+json)"},
}
_STATE_EXAMPLE = {
    "execution_id": "orders-3f2a9c1d2e4b",
    "run_id": "5f0c2a9e-6d1b-4c4e-9a57-0b8e2f6c1d23",
    "definition_id": "orders",
    "definition_version": "3",
    "plan_hash": "sha256:5d41402abc4b2a76b9719d911017c592",
    "trigger": "manual",
    "status": "running",
    "started_at": "2026-11-28T09:00:00Z",
    "current_steps": ["orders/score"],
    "steps": {
        "orders/fetch": {
            "id": "fetch",
            "path": "orders/fetch",
            "kind": "http",
            "status": "completed",
            "attempts": 2,
            "started_at": "2026-11-28T09:00:00Z",
            "ended_at": "2026-11-28T09:00:01.250Z",
            "metrics": {"duration_ms": 412.5, "http_status": 200},
        },
        "orders/score": {
            "id": "score",
            "path": "orders/score",
            "kind": "python",
            "status": "running",
            "started_at": "2026-11-28T09:00:01.250Z",
            "items": {"total": 100, "completed": 39, "failed": 1, "running": 4},
        },
    },
    "items_processed": 40,
    "items_total": 100,
    "error_count": 1,
}
_STREAM_EXAMPLE = (
    ": ping\n\n"
    "id: 5f0c2a9e-r-\nevent: execution-start\n"
    'data: {"execution_id": "orders-3f2a", "definition_id": "orders", "trigger": "manual", ...}\n\n'
    "id: 5f0c2a9e-r-c.s\nevent: step-start\n"
    'data: {"execution_id": "orders-3f2a", "step": "orders/score", "attempt": 1, '
    '"at": "2026-11-28T09:00:01Z", ...}\n\n'
    "id: 5f0c2a9e-r-c.s/40\nevent: progress\n"
    'data: {"step": "orders/score", "processed": 40, "total": 100, "percent": 40.0, ...}\n\n'
)
_DASHBOARD_EXAMPLE = (
    "event: execution\n"
    'data: {"execution_id": "orders-3f2a", "definition_id": "orders", "trigger": "schedule", '
    '"status": "running", "current_step": "orders/score", "items_processed": 40, ...}\n\n'
)


def _sse_response(content: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(content, ping=PING_INTERVAL_S, headers={"X-Accel-Buffering": "no"})


def _now() -> datetime:
    return datetime.now(UTC)


def _sse(event: Event) -> ServerSentEvent:
    return ServerSentEvent(_json(event.data), event=event.name, id=event.id)


def _json(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)


def _status_name(description: WorkflowExecutionDescription) -> str:
    return description.status.name.lower() if description.status else "unknown"


async def open_execution(
    client: Client, execution_id: str, run_id: str | None = None
) -> tuple[WorkflowHandle, WorkflowExecutionDescription]:
    """The execution's handle and description: 404 when Temporal has no such execution, 503 when no
    worker polls its task queue (reading its state needs one)."""
    handle = client.get_workflow_handle(execution_id, run_id=run_id)
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise Problem(404, "Not found", f"no execution '{execution_id}'") from None
        raise rpc_problem(error, f"cannot describe '{execution_id}'") from None
    if description.workflow_type != sa.WORKFLOW_TYPE:
        raise Problem(404, "Not found", f"no execution '{execution_id}'")
    if not await worker_available(client, description.task_queue):
        raise Problem(
            503,
            "No worker available",
            f"no worker is polling the task queue '{description.task_queue}'; start one with "
            "`rte worker` (the execution is durable and continues when a worker starts)",
        )
    return handle, description


async def _read(handle: WorkflowHandle, description: WorkflowExecutionDescription) -> ExecutionState:
    try:
        return await read_state(handle, query_timeout=STATE_QUERY_TIMEOUT)
    except WorkflowQueryFailedError as error:
        raise query_failed_problem(handle.id, error) from None
    except NoWorkerError as error:
        # A worker polls (open_execution checked it): the execution itself may be what cannot answer.
        raise stuck_problem(description) or Problem(503, "No worker available", str(error)) from None
    except RPCError as error:
        raise rpc_problem(error, f"the state query on '{handle.id}' failed") from None


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "Server-Sent Events `execution`: an `ExecutionSummary` (as in GET /executions) "
            "each time an execution appears or its status, current step or progress changes. A client "
            "that reconnects gets a fresh snapshot.",
            "content": {"text/event-stream": {"example": _DASHBOARD_EXAMPLE}},
        }
    },
)
async def stream_executions(
    filters: Annotated[ExecutionFilter, Query()],
    client: TemporalClientDep,
    settings: SettingsDep,
    _: ViewerKey,
    limit: Annotated[
        int, Query(ge=1, le=500, description="How many of the latest executions to follow")
    ] = 50,
) -> EventSourceResponse:
    """Stream status changes of the latest executions matching the filters, for a dashboard."""
    query = visibility.build_query(filters)
    first, _token = await visibility.list_page(client, query, limit)  # a bad filter is a 400 problem

    async def changes() -> AsyncIterator[ServerSentEvent]:
        known: dict[str, ExecutionSummary] = {}
        listed = first
        while True:
            for info in reversed(listed):  # oldest first
                change = visibility.summary(info, settings)
                if known.get(change.run_id) != change:
                    known[change.run_id] = change
                    yield ServerSentEvent(change.model_dump_json(), event="execution")
            await asyncio.sleep(DASHBOARD_REFRESH_S)
            try:
                listed, _token = await visibility.list_page(client, query, limit)
            except Problem as problem:
                yield ServerSentEvent(
                    _json({"title": problem.title, "detail": problem.detail}), event="error"
                )
                return

    return _sse_response(changes())


@router.get(
    "/{execution_id}/state",
    response_model=ExecutionState,
    responses={200: {"content": {"application/json": {"example": _STATE_EXAMPLE}}}, **_PROBLEMS},
)
async def execution_state(
    execution_id: str, client: TemporalClientDep, _: ViewerKey, run_id: str | None = None
) -> ExecutionState:
    """The execution's live state: every step's status, attempts, items, timings and errors."""
    handle, description = await open_execution(client, execution_id, run_id)
    return await _read(handle, description)


@router.get(
    "/{execution_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "Server-Sent Events: " + ", ".join(EVENT_NAMES) + ". Each `id` is a "
            "cursor: reconnect with `Last-Event-ID` to get only what was missed.",
            "content": {"text/event-stream": {"example": _STREAM_EXAMPLE}},
        },
        204: {"description": "Resumed after the last event of a closed execution: nothing left"},
        **_PROBLEMS,
    },
)
async def execution_events(
    execution_id: str,
    client: TemporalClientDep,
    store: StoreDep,
    _: ViewerKey,
    run_id: str | None = None,
    last_event_id: Annotated[str | None, Header(description="The id of the last event received")] = None,
    after: Annotated[
        str | None, Query(description="Same as Last-Event-ID, for clients that cannot set it")
    ] = None,
) -> Response:
    """Stream the execution's step events live, from its start or from `Last-Event-ID`."""
    cursor = last_event_id or after
    handle, description = await open_execution(client, execution_id, run_id)
    if cursor and _status_name(description) != "running":
        state = await _read(handle, description)
        if not diff(View.resume(cursor, state), state, _now(), _status_name(description)):
            return Response(status_code=204)  # EventSource stops reconnecting on a 204
    return _sse_response(_execution_events(client, store, execution_id, run_id, cursor))


async def _execution_events(
    client: Client, store: Store, execution_id: str, run_id: str | None, cursor: str | None
) -> AsyncIterator[ServerSentEvent]:
    view: View | None = None
    state: ExecutionState | None = None
    # Steps the worker reports ended before history can show it (local activities): api/sse.py.
    handle = client.get_workflow_handle(execution_id, run_id=run_id)
    reports = partial(WorkerReports, store.metrics, execution_id, handle.describe)
    try:
        async with hub_for(client).follow(execution_id, run_id, reports) as shared:
            async for version, state in shared.states():
                view = view or View.resume(cursor, state)
                # Clients of one execution mostly know the same: each diff is computed once per state.
                memo = shared.memo(version)
                known = view.cursor()
                if known not in memo:
                    memo[known] = ([_sse(event) for event in diff(view, state, _now())], view.cursor())
                events, after = memo[known]
                view = View.resume(after, state)
                for event in events:
                    yield event
        if state is not None and view is not None and not view.finished:
            # The interpreter's state cannot say it was cancelled, terminated or timed out.
            closed = await client.get_workflow_handle(execution_id, run_id=state.run_id).describe()
            for event in diff(view, state, _now(), _status_name(closed)):
                yield _sse(event)
    except NoWorkerError as error:
        yield ServerSentEvent(_json({"title": "No worker available", "detail": str(error)}), event="error")
    except WorkflowQueryFailedError as error:
        problem = query_failed_problem(execution_id, error)
        yield ServerSentEvent(_json({"title": problem.title, "detail": problem.detail}), event="error")
    except RPCError as error:
        yield ServerSentEvent(_json({"title": "Temporal unavailable", "detail": str(error)}), event="error")
