"""Starting executions and reading their outcome: shared by the CLI, the API and the benchmarks."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, CancelledError, TerminatedError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError
from temporalio.service import RPCError, RPCStatusCode

from rte import temporal as sa
from rte.claim_check import DEFAULT_THRESHOLD_BYTES, PayloadStore, offload, resolve, serialized_size
from rte.errors import EngineError, ErrorCategory
from rte.metrics import execution_started
from workflows.plan import Plan
from workflows.state import ExecutionConfig, ExecutionInput

# Parameters kept inline when no payload store is at hand: under Temporal's 2 MB per payload, with
# room for the plan beside them.
MAX_INLINE_PARAMS_BYTES = 1_000_000
# The whole start input (plan, parameters, configuration): under the 2 MB per payload.
MAX_START_INPUT_BYTES = 1_500_000


READ_TIMEOUT = timedelta(seconds=10)


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
    payloads: PayloadStore | None = None,
    offload_bytes: int = DEFAULT_THRESHOLD_BYTES,
    step_task_queues: dict[str, str] | None = None,
) -> WorkflowHandle[Any, Any]:
    """Start the interpreter on a plan; `params` must already be validated against its input schema.

    Parameters over `offload_bytes` go to `payloads` and travel as references (rte/claim_check.py).
    `step_task_queues` routes step kinds to task queues of their own (`Settings.step_task_queues()`,
    e.g. `script` to sandbox workers); it is recorded in the input, so the execution keeps it.
    """
    config = config or ExecutionConfig()
    params = await offload_params(params, payloads, offload_bytes)
    run_input = ExecutionInput(
        plan=plan,
        params=params,
        trigger=trigger,
        config=config,
        definition_version=definition_version,
        step_task_queues=step_task_queues or {},
    )
    if (size := serialized_size(run_input.model_dump(mode="json", by_alias=True))) > MAX_START_INPUT_BYTES:
        # The plan itself travels in the start event: a definition with megabytes of constants.
        raise EngineError(
            ErrorCategory.VALIDATION,
            f"the execution's input (its plan and parameters) is {size:,} bytes; Temporal carries at "
            f"most {MAX_START_INPUT_BYTES:,}: keep large constants out of the definition (pass them as "
            "parameters, which travel by reference)",
        )
    timeout_s = config.timeout_s or plan.timeout_s
    attributes = execution_search_attributes(plan, trigger, definition_version)
    handle = await client.start_workflow(
        "RunPlan",
        run_input,
        id=execution_id or new_execution_id(plan),
        task_queue=task_queue,
        search_attributes=attributes,
        execution_timeout=timedelta(seconds=timeout_s) if timeout_s else None,
        request_eager_start=eager,
    )
    execution_started(plan.definition_id, trigger)
    return handle


async def offload_params(
    params: dict[str, Any], payloads: PayloadStore | None, offload_bytes: int = DEFAULT_THRESHOLD_BYTES
) -> dict[str, Any]:
    """Run parameters as they may enter Temporal history: large parts stored, referenced.

    Without a store they go inline (a rerun's parameters, which Temporal already carried once) as
    long as Temporal accepts them; beyond that, a clear error instead of Temporal's.
    """
    if payloads is None:
        if not params or (size := serialized_size(params)) <= MAX_INLINE_PARAMS_BYTES:
            return params
        raise EngineError(
            ErrorCategory.CONFIGURATION,
            f"the run parameters are {size:,} bytes, more than Temporal carries: they need the payload "
            "store (the SQL store), which is not available here",
        )
    # keep_root: `.inputs.name` stays readable in the workflow however many parameters there are.
    offloaded: dict[str, Any] = await offload(params, payloads, offload_bytes, keep_root=True)
    return offloaded


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


async def outcome(handle: WorkflowHandle[Any, Any], payloads: PayloadStore | None = None) -> tuple[bool, Any]:
    """(True, output) for a completed execution, (False, error object) for any other end.

    With `payloads`, references in the output are replaced by their content (rte/claim_check.py).
    """
    try:
        output = await handle.result()
    except WorkflowFailureError as failure:
        return False, failure_to_error(failure.cause)
    return True, await resolve(output, payloads) if payloads is not None else output


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


async def read_start_input(client: Client, execution_id: str, run_id: str = "") -> ExecutionInput | None:
    """What an execution started with (plan, parameters, configuration), from its first history
    event (the latest run when `run_id` is empty); None when Temporal has no such execution, or it
    is not one of the engine's. Other RPC errors are raised."""
    request = GetWorkflowExecutionHistoryRequest(
        namespace=client.namespace,
        execution=WorkflowExecution(workflow_id=execution_id, run_id=run_id),
        maximum_page_size=1,
    )
    try:
        response = await client.workflow_service.get_workflow_execution_history(request, timeout=READ_TIMEOUT)
    except RPCError as error:
        if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            return None
        raise
    events = response.history.events
    if not events or not events[0].HasField("workflow_execution_started_event_attributes"):
        return None
    started = events[0].workflow_execution_started_event_attributes
    if started.workflow_type.name != sa.WORKFLOW_TYPE:
        return None
    (run_input,) = await client.data_converter.decode(started.input.payloads, [ExecutionInput])
    return run_input
