"""Temporal visibility for the API: filters → a safe list query, opaque cursors, execution summaries.

Every value that reaches a query is either checked against a strict pattern by the request model or
quoted here (`literal`), so no filter can change the query's shape. A cursor is Temporal's
next_page_token, prefixed with a digest of the query it belongs to and base64-encoded: a cursor
that is damaged, or used with other filters, is refused with a 400 before Temporal sees it (the
server would otherwise fail the call with an internal error that the client retries for seconds).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from temporalio.api.enums.v1 import WorkflowExecutionStatus as RawStatus
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.converter import decode_typed_search_attributes
from temporalio.service import RPCError, RPCStatusCode

from api.errors import Problem, rpc_problem
from api.models import ExecutionFilter, ExecutionSummary
from rte import temporal as sa
from rte.config import Settings

_CURSOR_DIGEST_BYTES = 8
LIST_TIMEOUT_S = 15

STATUS_NAMES: dict[int, str] = {
    RawStatus.WORKFLOW_EXECUTION_STATUS_RUNNING: "running",
    RawStatus.WORKFLOW_EXECUTION_STATUS_COMPLETED: "completed",
    RawStatus.WORKFLOW_EXECUTION_STATUS_FAILED: "failed",
    RawStatus.WORKFLOW_EXECUTION_STATUS_CANCELED: "cancelled",
    RawStatus.WORKFLOW_EXECUTION_STATUS_TERMINATED: "terminated",
    RawStatus.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW: "continued_as_new",
    RawStatus.WORKFLOW_EXECUTION_STATUS_TIMED_OUT: "timed_out",
}
# Our names → the values of Temporal's ExecutionStatus search attribute.
TEMPORAL_STATUS = {
    "running": "Running",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Canceled",
    "terminated": "Terminated",
    "continued_as_new": "ContinuedAsNew",
    "timed_out": "TimedOut",
}
STATUS_FROM_TEMPORAL = {value: key for key, value in TEMPORAL_STATUS.items()}


def literal(value: str) -> str:
    """A visibility-query string literal: backslashes and quotes escaped, control characters refused."""
    if any(ord(char) < 32 for char in value):
        raise Problem(400, "Invalid filter", "filter values cannot contain control characters")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def timestamp(value: datetime) -> str:
    """A visibility-query date-time literal (UTC when naive; `api.models.Timestamp` values are UTC)."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    # strftime's %Y does not zero-pad years below 1000, and Temporal wants RFC 3339 (four digits).
    return literal(f"{value.year:04d}-{value:%m-%dT%H:%M:%S.%f}Z")


def build_query(filters: ExecutionFilter) -> str:
    """The visibility query for a filter; always limited to the engine's own workflow type."""
    clauses = [f"WorkflowType = {literal(sa.WORKFLOW_TYPE)}"]
    if filters.definition_id:
        clauses.append(f"{sa.DEFINITION_ID.name} = {literal(filters.definition_id)}")
    if filters.version:
        clauses.append(f"{sa.DEFINITION_VERSION.name} = {literal(filters.version)}")
    if filters.status:
        names = ", ".join(literal(TEMPORAL_STATUS[name]) for name in sorted(set(filters.status)))
        clauses.append(f"ExecutionStatus IN ({names})")
    if filters.trigger:
        clauses.append(f"{sa.TRIGGER_TYPE.name} = {literal(filters.trigger)}")
    elif not filters.include_children:
        trigger = sa.TRIGGER_TYPE.name
        clauses.append(f"({trigger} IS NULL OR {trigger} != 'child')")
    if filters.started_after:
        clauses.append(f"StartTime >= {timestamp(filters.started_after)}")
    if filters.started_before:
        clauses.append(f"StartTime < {timestamp(filters.started_before)}")
    if filters.id_prefix:
        clauses.append(f"WorkflowId STARTS_WITH {literal(filters.id_prefix)}")
    return " AND ".join(clauses)


def encode_cursor(query: str, token: bytes | None) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(_digest(query) + token).decode("ascii").rstrip("=")


def decode_cursor(query: str, cursor: str | None) -> bytes | None:
    if not cursor:
        return None
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise _bad_cursor("it is not valid base64") from None
    digest, token = raw[:_CURSOR_DIGEST_BYTES], raw[_CURSOR_DIGEST_BYTES:]
    if digest != _digest(query) or not token:
        raise _bad_cursor("it was not issued for these filters")
    return token


def _digest(query: str) -> bytes:
    return hashlib.sha256(query.encode()).digest()[:_CURSOR_DIGEST_BYTES]


def _bad_cursor(why: str) -> Problem:
    return Problem(
        400,
        "Invalid cursor",
        f"the cursor cannot be used: {why}. Pass back `next_cursor` exactly as a previous page "
        "with the same filters returned it, or drop `cursor` to start from the first page.",
    )


async def list_page(
    client: Client, query: str, page_size: int, token: bytes | None = None
) -> tuple[list[WorkflowExecutionInfo], bytes | None]:
    """One page of executions, newest first, and the token of the next page (None on the last)."""
    request = ListWorkflowExecutionsRequest(
        namespace=client.namespace, page_size=page_size, next_page_token=token or b"", query=query
    )
    try:
        response = await client.workflow_service.list_workflow_executions(
            request, retry=token is None, timeout=timedelta(seconds=LIST_TIMEOUT_S)
        )
    except RPCError as error:
        if token is not None and error.status in (RPCStatusCode.UNKNOWN, RPCStatusCode.INVALID_ARGUMENT):
            raise _bad_cursor("Temporal does not recognise it") from None
        if error.status == RPCStatusCode.INVALID_ARGUMENT:
            raise Problem(400, "Invalid filter", f"Temporal refused the filter: {error.message}") from None
        raise rpc_problem(error, "listing executions failed") from None
    return list(response.executions), response.next_page_token or None


async def iterate(
    client: Client, query: str, limit: int, page_size: int = 1000
) -> AsyncIterator[WorkflowExecutionInfo]:
    """Up to `limit` executions matching `query`, newest first, fetched page by page."""
    token: bytes | None = None
    seen = 0
    while seen < limit:
        page, token = await list_page(client, query, min(page_size, limit - seen), token)
        for info in page:
            yield info
            seen += 1
            if seen >= limit:
                return
        if token is None:
            return


def temporal_ui_url(settings: Settings, execution_id: str, run_id: str | None = None) -> str:
    base = f"{settings.temporal_ui_url.rstrip('/')}/namespaces/{quote(settings.namespace, safe='')}"
    url = f"{base}/workflows/{quote(execution_id, safe='')}"
    return f"{url}/{quote(run_id, safe='')}/history" if run_id else url


def status_name(status: int | WorkflowExecutionStatus | None) -> str:
    return STATUS_NAMES.get(int(status or 0), "running")


def summary(info: WorkflowExecutionInfo, settings: Settings) -> ExecutionSummary:
    attributes = decode_typed_search_attributes(info.search_attributes)
    start = info.start_time.ToDatetime(tzinfo=UTC) if info.HasField("start_time") else None
    close = info.close_time.ToDatetime(tzinfo=UTC) if info.HasField("close_time") else None
    execution_id, run_id = info.execution.workflow_id, info.execution.run_id
    return ExecutionSummary(
        execution_id=execution_id,
        run_id=run_id,
        definition_id=attributes.get(sa.DEFINITION_ID),
        definition_version=attributes.get(sa.DEFINITION_VERSION),
        trigger=attributes.get(sa.TRIGGER_TYPE),
        status=status_name(info.status),  # type: ignore[arg-type]
        start_time=start,
        close_time=close,
        duration_ms=(close - start).total_seconds() * 1000 if start and close else None,
        current_step=attributes.get(sa.CURRENT_STEP) or None,
        items_processed=attributes.get(sa.ITEMS_PROCESSED),
        items_total=attributes.get(sa.ITEMS_TOTAL),
        error_count=attributes.get(sa.ERROR_COUNT),
        plan_hash=attributes.get(sa.PLAN_HASH),
        temporal_ui_url=temporal_ui_url(settings, execution_id, run_id),
    )
