"""Execution logs (viewer): query with filters and a cursor, follow live over SSE, export.

Step logs are written to the SQL store by the worker at the end of each attempt. The log table has
no change notifications, so the live tail (`rte.watch.follow_logs`, which `rte logs --follow`
uses too) wakes on the execution's history long-poll (a step completing or failing for good writes a
history event right after its logs) AND after a short bounded sleep: a failed attempt that Temporal
retries, or a local activity still in its workflow task, writes logs but no history event yet. The
tail ends once the execution has closed and every log up to then has been sent.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.deps import StoreDep, TemporalClientDep, ViewerKey
from api.errors import Problem, rpc_problem
from api.models import Timestamp
from rte.executions import read_start_input
from rte.store import Store
from rte.store.repositories import MAX_PAGE, LogLevel, LogRow
from rte.watch import follow_logs

router = APIRouter(prefix="/executions/{execution_id}/logs", tags=["logs"])

# The longest a live tail goes without looking at the log table (see the module docstring).
TAIL_MAX_WAIT_S: float = 1.0
PING_INTERVAL_S: float = 15
EXPORT_PAGE = MAX_PAGE

_EXAMPLE_LOG = {
    "id": 1042,
    "execution_id": "orders-3f2a9c1d2e4b",
    "run_id": "5f0c2a9e-6d1b-4c4e-9a57-0b8e2f6c1d23",
    "step_path": "orders/fetch",
    "item_index": None,
    "attempt": 2,
    "level": "warning",
    "source": "http",
    "message": "GET https://crm.example/orders → 503, retrying",
    "timestamp": "2026-11-28T09:00:01.250000+00:00",
}


class LogFilters(BaseModel):
    """Which log lines: every field narrows the result."""

    level: LogLevel | None = Field(None, description="Minimum level: this one and more severe.")
    source: str | None = Field(None, max_length=100, examples=["http"])
    text: str | None = Field(None, max_length=500, description="Case-insensitive substring of the message.")
    step: str | None = Field(
        None,
        max_length=500,
        description="A step's path, or its id alone when that names one step; an unknown step is a 422.",
        examples=["orders/fetch"],
    )
    since: Timestamp | None = Field(None, description="Inclusive; ISO 8601.")
    until: Timestamp | None = Field(None, description="Exclusive; ISO 8601.")


class LogPage(BaseModel):
    items: list[LogRow] = Field(examples=[[_EXAMPLE_LOG]])
    next_after_id: int | None = Field(
        None, description="Pass as `after_id` for the next page; null on the last.", examples=[1042]
    )


Filters = Annotated[LogFilters, Query()]
# Log line ids are SQL BIGINTs: a larger cursor cannot even be compared in the query.
MAX_LINE_ID = 2**63 - 1
AfterId = Annotated[
    int | None, Query(ge=0, le=MAX_LINE_ID, description="Only lines after this id (a cursor).")
]
_PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such execution (problem+json)"},
    422: {"description": "A filter is invalid, or `step` names no step of the execution (problem+json)"},
}


async def _page(
    store: Store, execution_id: str, filters: LogFilters, after_id: int | None, limit: int
) -> list[LogRow]:
    return await store.logs.query(
        execution_id,
        min_level=filters.level,
        source=filters.source,
        text=filters.text,
        since=filters.since,
        until=filters.until,
        step_path=filters.step,
        after_id=after_id,
        limit=limit,
    )


async def _step_paths(store: Store, client: Client, execution_id: str) -> list[str]:
    """Every step path of the execution's plan; the paths its logs name once Temporal has forgotten it."""
    try:
        run_input = await read_start_input(client, execution_id)
    except RPCError as error:
        raise rpc_problem(error, f"cannot read '{execution_id}'") from None
    if run_input is not None:
        return [step.path for step in run_input.plan.walk()]
    return await store.logs.step_paths(execution_id)


async def _resolved(store: Store, client: Client, execution_id: str, filters: LogFilters) -> LogFilters:
    """The filters with `step` as a full path: a bare step id is looked up in the execution's plan;
    a step the execution does not have is a 422 naming the ones it has (an empty page would look
    like a step that logged nothing)."""
    step = filters.step
    if step is None:
        return filters
    paths = await _step_paths(store, client, execution_id)
    if not paths or step in paths:
        return filters  # nothing known to check against (an unknown execution is a 404 later)
    matches = [path for path in paths if path.rsplit("/", 1)[-1] == step]
    if len(matches) == 1:
        return filters.model_copy(update={"step": matches[0]})
    if matches:
        why = f"step id '{step}' names {len(matches)} steps ({', '.join(matches)}): pass the full path"
    else:
        close = difflib.get_close_matches(step, paths + [path.rsplit("/", 1)[-1] for path in paths], n=1)
        known = ", ".join(paths[:30]) + (f" … ({len(paths)} in all)" if len(paths) > 30 else "")
        suggestion = f"did you mean '{close[0]}'? " if close else ""
        why = f"execution '{execution_id}' has no step '{step}'; {suggestion}its steps: {known}"
    raise Problem(422, "Unknown step", why, violations=[{"path": "$.query.step", "message": why}])


async def _lifecycle(client: Client, execution_id: str) -> Literal["running", "closed", "unknown"]:
    try:
        description = await client.get_workflow_handle(execution_id).describe()
    except RPCError as error:
        if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            return "unknown"
        raise rpc_problem(error, f"cannot describe '{execution_id}'") from None
    return "running" if description.close_time is None else "closed"


async def _require_execution(store: Store, client: Client, execution_id: str) -> None:
    """404 unless Temporal knows the execution or it left logs (its history may have been deleted)."""
    if await _lifecycle(client, execution_id) != "unknown":
        return
    if not await store.logs.query(execution_id, limit=1):
        raise Problem(404, "Not found", f"no execution '{execution_id}'")


@router.get("", response_model=LogPage, responses=_PROBLEMS)
async def query_logs(
    execution_id: str,
    filters: Filters,
    store: StoreDep,
    client: TemporalClientDep,
    _: ViewerKey,
    after_id: AfterId = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> LogPage:
    """An execution's logs in the order they were written, filtered, a page at a time."""
    filters = await _resolved(store, client, execution_id, filters)
    rows = await _page(store, execution_id, filters, after_id, limit)
    if not rows and after_id is None:
        await _require_execution(store, client, execution_id)
    return LogPage(items=rows, next_after_id=rows[-1].id if len(rows) == limit else None)


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    responses={
        200: {
            "description": "Server-Sent Events `log` (id = the log line's id; reconnect with "
            "`Last-Event-ID` to resume), then `end` once the execution has closed.",
            "content": {
                "text/event-stream": {
                    "example": f"id: 1042\nevent: log\ndata: {json.dumps(_EXAMPLE_LOG)}\n\n"
                }
            },
        },
        204: {"description": "Resumed after the last line of a closed execution: nothing left"},
        **_PROBLEMS,
    },
)
async def tail_logs(
    execution_id: str,
    filters: Filters,
    store: StoreDep,
    client: TemporalClientDep,
    _: ViewerKey,
    after_id: AfterId = None,
    last_event_id: Annotated[str | None, Header(description="The id of the last line received")] = None,
) -> Response:
    """Follow an execution's logs live with the same filters, until the execution ends."""
    if last_event_id and last_event_id.strip().isdigit():
        if int(last_event_id) > MAX_LINE_ID:
            raise Problem(
                422,
                "Invalid request",
                f"Last-Event-ID {last_event_id.strip()[:30]} is not a log line id (at most {MAX_LINE_ID})",
                violations=[{"path": "$.headers.last-event-id", "message": "is not a log line id"}],
            )
        after_id = max(after_id or 0, int(last_event_id))
    filters = await _resolved(store, client, execution_id, filters)
    lifecycle = await _lifecycle(client, execution_id)
    if lifecycle != "running" and not await _page(store, execution_id, filters, after_id, 1):
        if after_id is not None and lifecycle == "closed":
            return Response(status_code=204)  # nothing left: an EventSource stops reconnecting
        if not await store.logs.query(execution_id, limit=1) and lifecycle == "unknown":
            raise Problem(404, "Not found", f"no execution '{execution_id}'")
    return EventSourceResponse(
        _tail(store, client, execution_id, filters, after_id),
        ping=PING_INTERVAL_S,
        headers={"X-Accel-Buffering": "no"},
    )


async def _tail(
    store: Store, client: Client, execution_id: str, filters: LogFilters, after_id: int | None
) -> AsyncIterator[ServerSentEvent]:
    def read_after(after: int | None) -> Awaitable[list[LogRow]]:
        return _page(store, execution_id, filters, after, MAX_PAGE)

    tail = follow_logs(client, execution_id, read_after, after_id=after_id, max_wait_s=TAIL_MAX_WAIT_S)
    async with contextlib.aclosing(tail) as rows:  # a closed stream stops the history long-poll too
        async for row in rows:
            yield ServerSentEvent(row.model_dump_json(), event="log", id=str(row.id))
    yield ServerSentEvent(json.dumps({"reason": "the execution has closed"}), event="end")


_EXPORTS: dict[str, tuple[str, str]] = {
    "ndjson": ("application/x-ndjson", "ndjson"),
    "csv": ("text/csv; charset=utf-8", "csv"),
    "text": ("text/plain; charset=utf-8", "log"),
}
_CSV_COLUMNS = ("id", "timestamp", "level", "source", "step_path", "item_index", "attempt", "message")


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Every matching line, streamed: NDJSON, CSV (with a header row) or plain text.",
            "content": {
                "application/x-ndjson": {"example": json.dumps(_EXAMPLE_LOG) + "\n"},
                "text/csv": {
                    "example": ",".join(_CSV_COLUMNS) + "\n1042,2026-11-28T09:00:01.250000+00:00,warning,"
                    'http,orders/fetch,,2,"GET https://crm.example/orders → 503, retrying"\n'
                },
                "text/plain": {
                    "example": "2026-11-28T09:00:01.250000+00:00 WARNING [orders/fetch #2] http: "
                    "GET https://crm.example/orders → 503, retrying\n"
                },
            },
        },
        **_PROBLEMS,
    },
)
async def export_logs(
    execution_id: str,
    filters: Filters,
    store: StoreDep,
    client: TemporalClientDep,
    _: ViewerKey,
    format: Literal["ndjson", "csv", "text"] = "ndjson",
) -> StreamingResponse:
    """Download an execution's logs (with the same filters) as NDJSON, CSV or plain text."""
    filters = await _resolved(store, client, execution_id, filters)
    if not await _page(store, execution_id, filters, None, 1):
        await _require_execution(store, client, execution_id)
    media_type, extension = _EXPORTS[format]

    async def lines() -> AsyncIterator[str]:
        after_id: int | None = None
        if format == "csv":
            yield _csv_line(_CSV_COLUMNS)
        while rows := await _page(store, execution_id, filters, after_id, EXPORT_PAGE):
            yield "".join(_render(row, format) for row in rows)
            after_id = rows[-1].id

    filename = f"{execution_id}-logs.{extension}".replace('"', "")
    return StreamingResponse(
        lines(), media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


def _csv_line(values: tuple[Any, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(values)
    return buffer.getvalue()


def _render(row: LogRow, format: str) -> str:
    if format == "ndjson":
        return row.model_dump_json() + "\n"
    if format == "csv":
        values = row.model_dump(mode="json")
        return _csv_line(tuple("" if values[column] is None else values[column] for column in _CSV_COLUMNS))
    where = row.step_path or "-"
    item = f"[{row.item_index}]" if row.item_index is not None else ""
    return f"{row.timestamp.isoformat()} {row.level.upper()} [{where}{item} #{row.attempt}] {row.source}: {row.message}\n"
