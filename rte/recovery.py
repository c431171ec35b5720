"""Recovering finished executions: retry from scratch, resume from the failure, replay the record.

A retry starts the same plan with the same parameters and configuration. A resume starts it too,
but hands the new execution the recorded outputs of the steps that succeeded (read with the
interpreter's `recorded_outputs` query, which a worker answers by replaying the history — nothing is
run again), so those steps are not run again and the execution picks up at the step that failed.
Both link the new execution to the original with the `RteParentExecution` search attribute and the
trigger ("retry" or "resume"). Shared by the API, the CLI and error analysis ("apply suggestion").
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from rte import temporal as sa
from rte.executions import execution_search_attributes, new_execution_id
from rte.metrics import execution_started
from workflows.state import ExecutionInput, ExecutionState, ResumeSpec, StepStatus

RPC_TIMEOUT = timedelta(seconds=10)
QUERY_TIMEOUT = timedelta(seconds=15)
RECOVERABLE = frozenset(
    {
        WorkflowExecutionStatus.FAILED,
        WorkflowExecutionStatus.CANCELED,
        WorkflowExecutionStatus.TERMINATED,
        WorkflowExecutionStatus.TIMED_OUT,
    }
)


class RecoveryError(Exception):
    """Why an execution cannot be recovered; `status` is how the API answers it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class ReplayFrame(BaseModel):
    """One recorded step of a finished execution, with the variables as they were before it ran."""

    position: int
    step_path: str
    step_id: str
    status: str
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    variables: dict[str, Any]


async def retry_from_scratch(
    client: Client, execution_id: str, *, task_queue: str, run_id: str | None = None
) -> str:
    """A new execution of the same plan with the same parameters; returns its id."""
    run_input, _ = await _finished_input(client, execution_id, run_id)
    return await _start(client, run_input, execution_id, task_queue, "retry")


async def resume_from_failure(
    client: Client, execution_id: str, *, task_queue: str, run_id: str | None = None
) -> str:
    """A new execution that reuses the outputs of the steps that succeeded; returns its id."""
    run_input, found_run = await _finished_input(client, execution_id, run_id, resumable=True)
    handle = client.get_workflow_handle(execution_id, run_id=found_run)
    try:
        outputs = await handle.query("recorded_outputs", result_type=dict, rpc_timeout=QUERY_TIMEOUT)
    except (WorkflowQueryFailedError, RPCError) as error:
        raise RecoveryError(
            503, f"cannot read the recorded outputs of '{execution_id}' (is a worker running?): {error}"
        ) from None
    resume = ResumeSpec(from_execution=execution_id, from_run=found_run, outputs=outputs)
    return await _start(
        client, run_input.model_copy(update={"resume": resume}), execution_id, task_queue, "resume"
    )


async def recorded_steps(client: Client, execution_id: str, run_id: str | None = None) -> list[ReplayFrame]:
    """The finished steps in the order they started, each with the scope it saw.

    Read from the interpreter's queries on the closed execution: a worker replays its history, so
    nothing runs again and no side effect happens.
    """
    _, found_run = await _finished_input(client, execution_id, run_id)
    handle = client.get_workflow_handle(execution_id, run_id=found_run)
    try:
        state = await handle.query("state", result_type=ExecutionState, rpc_timeout=QUERY_TIMEOUT)
        trail = await handle.query("trail", result_type=list[str], rpc_timeout=QUERY_TIMEOUT)
        outputs = await handle.query("recorded_outputs", result_type=dict, rpc_timeout=QUERY_TIMEOUT)
    except (WorkflowQueryFailedError, RPCError) as error:
        raise RecoveryError(
            503, f"cannot read the record of '{execution_id}' (is a worker running?): {error}"
        ) from None
    frames: list[ReplayFrame] = []
    seen: dict[str, dict[str, Any]] = {}
    for path in dict.fromkeys(trail):  # a step that ran again is shown once, with its last outcome
        step = state.steps.get(path)
        if step is None or step.status not in (StepStatus.COMPLETED, StepStatus.FAILED):
            continue
        output = outputs.get(path, step.output)
        frames.append(
            ReplayFrame(
                position=len(frames),
                step_path=path,
                step_id=step.id,
                status=step.status.value,
                input=step.input,
                output=output,
                error=step.error.model_dump(mode="json") if step.error else None,
                variables={"inputs": state.params, "steps": dict(seen)},
            )
        )
        seen[step.id] = {"output": output, "status": step.status.value}
    return frames


async def _finished_input(
    client: Client, execution_id: str, run_id: str | None, resumable: bool = False
) -> tuple[ExecutionInput, str]:
    handle = client.get_workflow_handle(execution_id, run_id=run_id)
    try:
        description = await handle.describe(rpc_timeout=RPC_TIMEOUT)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise RecoveryError(404, f"no execution '{execution_id}'") from None
        raise RecoveryError(503, f"cannot describe '{execution_id}': {error.message}") from None
    if description.status not in RECOVERABLE and description.status != WorkflowExecutionStatus.COMPLETED:
        raise RecoveryError(
            409, f"execution '{execution_id}' is still running: it can only be recovered once it has ended"
        )
    if resumable and description.status not in RECOVERABLE:
        raise RecoveryError(
            409,
            f"execution '{execution_id}' completed: there is no failure to resume from (retry it instead)",
        )
    request = GetWorkflowExecutionHistoryRequest(
        namespace=client.namespace,
        execution=WorkflowExecution(workflow_id=execution_id, run_id=description.run_id),
        maximum_page_size=1,
    )
    try:
        response = await client.workflow_service.get_workflow_execution_history(request, timeout=RPC_TIMEOUT)
    except RPCError as error:
        raise RecoveryError(503, f"cannot read '{execution_id}': {error.message}") from None
    events = response.history.events
    if not events or not events[0].HasField("workflow_execution_started_event_attributes"):
        raise RecoveryError(404, f"execution '{execution_id}' has no start event")
    payloads = events[0].workflow_execution_started_event_attributes.input.payloads
    (run_input,) = await client.data_converter.decode(payloads, [ExecutionInput])
    if run_input.slice is not None:
        raise RecoveryError(409, f"'{execution_id}' is a slice of a for_each: recover its parent execution")
    return run_input, description.run_id


async def _start(
    client: Client, run_input: ExecutionInput, original: str, task_queue: str, trigger: str
) -> str:
    plan = run_input.plan
    attributes = execution_search_attributes(plan, trigger).search_attributes
    linked = TypedSearchAttributes([*attributes, SearchAttributePair(sa.PARENT_EXECUTION, original)])
    timeout_s = run_input.config.timeout_s or plan.timeout_s
    handle = await client.start_workflow(
        sa.WORKFLOW_TYPE,
        run_input.model_copy(update={"trigger": trigger}),
        id=new_execution_id(plan),
        task_queue=task_queue,
        search_attributes=linked,
        execution_timeout=timedelta(seconds=timeout_s) if timeout_s else None,
    )
    execution_started(plan.definition_id, trigger)
    return handle.id
