"""Where failures come from: recorded step attempts (SQL) and closed executions (Temporal).

A failure already recorded as a step attempt of the same execution and step is not counted twice;
a closed execution never changes, so its final failure is read once per process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from api import visibility
from api.errors import Problem
from api.routes.executions import _start_input
from rte import analysis
from rte import temporal as sa
from rte.errors import NON_RETRYABLE_CATEGORIES
from rte.store import Store
from rte.store.errors import FailedAttempt
from workflows.plan import ACTIVITY_KINDS

EXECUTION_SCAN = 300  # failed executions read from Temporal per request
SQL_SCAN = 5000
READ_CONCURRENCY = 8
RPC_TIMEOUT = timedelta(seconds=10)
CLOSED_FAILED = ("Failed", "TimedOut", "Canceled", "Terminated")
FAILED_STATUSES = {
    WorkflowExecutionStatus.FAILED,
    WorkflowExecutionStatus.TIMED_OUT,
    WorkflowExecutionStatus.CANCELED,
    WorkflowExecutionStatus.TERMINATED,
}
# A closed execution never changes: its final failure is read once per process.
_EXECUTION_CACHE: dict[str, analysis.Failure | None] = {}
_CACHE_MAX = 20_000


async def collect(
    store: Store,
    client: Client,
    since: datetime,
    until: datetime,
    workflow: str | None = None,
    category: str | None = None,
    step: str | None = None,
) -> tuple[list[analysis.Failure], dict[str, int]]:
    """Failures in [since, until) from both sources, newest first, with `recovered` set."""
    rows = await store.errors.failures(
        since=since, until=until, definition_id=workflow, category=category, step_path=step, limit=SQL_SCAN
    )
    attempts = [from_attempt(row) for row in rows]
    executions = await _failed_executions(client, since, until, workflow)
    kept = []
    for failure in executions:
        if (category and failure.category != category) or (step and failure.step_path != step):
            continue
        if failure.kind in ACTIVITY_KINDS and await store.errors.failures(
            execution_id=failure.execution_id, step_path=failure.step_path, limit=1
        ):
            continue  # its attempts are already counted
        kept.append(failure)
    failures = await mark_recovered(store, client, attempts + kept)
    failures.sort(key=lambda f: f.at, reverse=True)
    return failures, {"step_attempt": len(attempts), "execution": len(kept)}


def workflow_of(description: Any) -> str | None:
    return description.typed_search_attributes.get(sa.DEFINITION_ID)


def from_attempt(row: FailedAttempt) -> analysis.Failure:
    category = row.error_category or "internal"
    message = row.error_message or f"attempt {row.attempt} failed [{category}]"
    target = row.connection_id or row.host
    return analysis.Failure(
        at=row.started_at,
        execution_id=row.execution_id,
        run_id=row.run_id,
        definition_id=row.definition_id,
        step_path=row.step_path,
        kind=row.kind,
        category=category,
        message=message,
        # Rows written before migration 0005 have no fingerprint: compute it the same way.
        fingerprint=row.error_fingerprint or analysis.fingerprint(row.kind, category, target, message),
        retryable=(
            row.error_retryable
            if row.error_retryable is not None
            else category not in NON_RETRYABLE_CATEGORIES
        ),
        attempt=row.attempt,
        item_index=row.item_index,
        http_status=row.http_status,
        connection_id=row.connection_id,
        host=row.host,
        details=row.error_details,
    )


async def _failed_executions(
    client: Client, since: datetime, until: datetime, workflow: str | None
) -> list[analysis.Failure]:
    clauses = [
        f"WorkflowType = {visibility.literal(sa.WORKFLOW_TYPE)}",
        f"ExecutionStatus IN ({', '.join(visibility.literal(s) for s in CLOSED_FAILED)})",
        f"CloseTime >= {_ts(since)}",
        f"CloseTime < {_ts(until)}",
        # A for_each slice's failure reaches its parent, which is counted instead.
        f"({sa.TRIGGER_TYPE.name} IS NULL OR {sa.TRIGGER_TYPE.name} != 'child')",
    ]
    if workflow:
        clauses.append(f"{sa.DEFINITION_ID.name} = {visibility.literal(workflow)}")
    infos = [info async for info in visibility.iterate(client, " AND ".join(clauses), EXECUTION_SCAN)]
    slots = asyncio.Semaphore(READ_CONCURRENCY)

    async def one(info: Any) -> analysis.Failure | None:
        async with slots:
            closed = info.close_time.ToDatetime(tzinfo=UTC) if info.HasField("close_time") else until
            return await execution_failure(
                client, info.execution.workflow_id, info.execution.run_id, closed, info
            )

    found = await asyncio.gather(*(one(info) for info in infos))
    return [failure for failure in found if failure is not None]


async def execution_failure(
    client: Client, execution_id: str, run_id: str, closed: datetime | None, info: Any = None
) -> analysis.Failure | None:
    """The final failure of a closed execution, read from its last history event (cached)."""
    if run_id in _EXECUTION_CACHE:
        return _EXECUTION_CACHE[run_id]
    request = GetWorkflowExecutionHistoryReverseRequest(
        namespace=client.namespace,
        execution=WorkflowExecution(workflow_id=execution_id, run_id=run_id),
        maximum_page_size=1,
    )
    try:
        response = await client.workflow_service.get_workflow_execution_history_reverse(
            request, timeout=RPC_TIMEOUT
        )
        run_input = await _start_input(client, execution_id, run_id)
    except (RPCError, Problem):
        return None  # deleted meanwhile, or Temporal is busy: the next request tries again
    if not response.history.events:
        return None
    event = response.history.events[0]
    error = await _final_error(client, event)
    if error is None:
        return None
    step_path = str(error.get("step_path") or "")
    plan_step = next((s for s in run_input.plan.walk() if s.path == step_path), None)
    kind = plan_step.kind.value if plan_step else "workflow"
    details = error.get("details") if isinstance(error.get("details"), dict) else None
    url = details.get("url") if details else None
    host = analysis.host_of(url) if isinstance(url, str) else None
    connection = plan_step.connection if plan_step else None
    category, message = str(error.get("category") or "internal"), str(error.get("message") or "")
    at = closed or datetime.now(UTC)
    failure = analysis.Failure(
        at=at,
        execution_id=execution_id,
        run_id=run_id,
        definition_id=run_input.plan.definition_id,
        step_path=step_path,
        kind=kind,
        category=category,
        message=message[: analysis.MAX_MESSAGE],
        fingerprint=analysis.fingerprint(kind, category, connection or host, message),
        retryable=bool(error.get("retryable", category not in NON_RETRYABLE_CATEGORIES)),
        attempt=int(error.get("attempts") or 1),
        item_index=error.get("item_index"),
        http_status=details.get("status") if details and isinstance(details.get("status"), int) else None,
        connection_id=connection,
        host=host,
        details=analysis.bounded_details(details),
        source="execution",
    )
    if len(_EXECUTION_CACHE) >= _CACHE_MAX:
        _EXECUTION_CACHE.clear()
    _EXECUTION_CACHE[run_id] = failure
    return failure


async def _final_error(client: Client, event: Any) -> dict[str, Any] | None:
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
        cause = await client.data_converter.decode_failure(
            event.workflow_execution_failed_event_attributes.failure
        )
        if isinstance(cause, ApplicationError):
            details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
            # The interpreter's details are the step's ErrorInfo; its message is the step's own.
            return {"category": cause.type or "internal", "message": cause.message} | details
        return {"category": "internal", "message": str(cause)}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
        return {"category": "timeout", "message": "the execution ran past its timeout", "retryable": True}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
        return {"category": "cancelled", "message": "the execution was cancelled", "retryable": False}
    if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
        reason = event.workflow_execution_terminated_event_attributes.reason
        return {
            "category": "cancelled",
            "message": f"the execution was terminated: {reason}",
            "retryable": False,
        }
    return None


async def mark_recovered(
    store: Store, client: Client, failures: Sequence[analysis.Failure]
) -> list[analysis.Failure]:
    """Recovered = the same workflow step succeeded later (a retry attempt or a later execution).

    Step attempts answer for I/O steps; pure steps record no attempts, so for them a later completed
    execution of the same workflow counts (an execution completes only when its failing step did not
    fail again).
    """
    history = await store.errors.successes(
        ((f.definition_id, f.step_path) for f in failures), (f.execution_id for f in failures)
    )
    later = history.first_attempt
    pure = {f.definition_id for f in failures if f.kind not in ACTIVITY_KINDS and f.definition_id}
    for definition_id in pure:
        latest = await _last_completed(client, definition_id)
        if latest is None:
            continue
        for path in {
            f.step_path for f in failures if f.definition_id == definition_id and f.kind not in ACTIVITY_KINDS
        }:
            later[(definition_id, path)] = max(latest, later.get((definition_id, path), latest))
    return analysis.mark_recovered(failures, later, history.same_execution)


async def _last_completed(client: Client, definition_id: str) -> datetime | None:
    query = (
        f"WorkflowType = {visibility.literal(sa.WORKFLOW_TYPE)} AND ExecutionStatus = 'Completed' "
        f"AND {sa.DEFINITION_ID.name} = {visibility.literal(definition_id)}"
    )
    latest = None
    async for info in visibility.iterate(client, query, 200):
        if info.HasField("start_time"):
            start = info.start_time.ToDatetime(tzinfo=UTC)
            latest = start if latest is None or start > latest else latest
    return latest


# Patterns and suggestions -----------------------------------------------------------------------


def _ts(value: datetime) -> str:
    return visibility.timestamp(value)
