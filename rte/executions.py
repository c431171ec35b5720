"""Starting executions and reading their outcome: shared by the CLI, the API and the benchmarks."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

from rte import temporal as sa
from workflows.plan import Plan
from workflows.state import ExecutionConfig, ExecutionInput


def new_execution_id(plan: Plan) -> str:
    return f"{plan.definition_id}-{uuid.uuid4().hex[:12]}"


async def start_execution(
    client: Client,
    plan: Plan,
    params: dict[str, Any],
    *,
    task_queue: str,
    trigger: str = "manual",
    config: ExecutionConfig | None = None,
    execution_id: str | None = None,
    definition_version: str | None = None,
    eager: bool = False,
) -> WorkflowHandle[Any, Any]:
    """Start the interpreter on a plan; `params` must already be validated against its input schema."""
    config = config or ExecutionConfig()
    timeout_s = config.timeout_s or plan.timeout_s
    attributes = execution_search_attributes(plan, trigger, definition_version)
    return await client.start_workflow(
        "RunPlan",
        ExecutionInput(plan=plan, params=params, trigger=trigger, config=config),
        id=execution_id or new_execution_id(plan),
        task_queue=task_queue,
        search_attributes=attributes,
        execution_timeout=timedelta(seconds=timeout_s) if timeout_s else None,
        request_eager_start=eager,
    )


def execution_search_attributes(
    plan: Plan, trigger: str, definition_version: str | None = None
) -> TypedSearchAttributes:
    """What every execution carries from its start, whoever starts it (CLI, API, schedule, webhook)."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(sa.DEFINITION_ID, plan.definition_id),
            SearchAttributePair(sa.DEFINITION_VERSION, definition_version or plan.version),
            SearchAttributePair(sa.PLAN_HASH, plan.hash),
            SearchAttributePair(sa.TRIGGER_TYPE, trigger),
            SearchAttributePair(sa.ITEMS_PROCESSED, 0),
            SearchAttributePair(sa.ERROR_COUNT, 0),
        ]
    )


async def outcome(handle: WorkflowHandle[Any, Any]) -> tuple[bool, Any]:
    """(True, output) for a completed execution, (False, error object) for any other end."""
    try:
        return True, await handle.result()
    except WorkflowFailureError as failure:
        return False, failure_to_error(failure.cause)


def failure_to_error(cause: BaseException | None) -> dict[str, Any]:
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        return (
            {"category": cause.type or "internal", "message": cause.message}
            | {key: value for key, value in details.items() if key not in ("category",) and value is not None}
            | {"message": cause.message}
        )
    if isinstance(cause, CancelledError):
        return {"category": "cancelled", "message": "the execution was cancelled"}
    if isinstance(cause, TerminatedError):
        return {"category": "cancelled", "message": f"the execution was terminated: {cause.message}"}
    if isinstance(cause, TemporalTimeoutError):
        return {"category": "timeout", "message": "the execution ran past its timeout"}
    return {"category": "internal", "message": str(cause)}
