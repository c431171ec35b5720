"""Calling a step's activity: its id, options, retry policy, task queue, and local or regular.

Regular activities are the default: their outcome is in history as soon as they end, so a worker
crash never runs a completed step again. `local: true` steps (and short safe GETs, chosen at compile
time) run as local activities: faster, at-least-once across a worker crash.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.base import BatchItem, StepRequest, StepResult
    from workflows.plan import PlanStep, RetrySpec
    from workflows.run.failures import StepFailed, activity_error
    from workflows.state import ExecutionInput

CHECKPOINT_TIMER_S = 0.001
DEFAULT_TIMEOUT_S = 300


async def call_activity(
    run_input: ExecutionInput,
    step: PlanStep,
    params: dict[str, Any],
    item_index: int | None,
    batch: list[BatchItem] | None = None,
    *,
    local: bool | None = None,
    output_budget_bytes: int | None = None,
) -> StepResult:
    """Run the step's activity. `local` overrides the default choice (a step marked local runs as a
    local activity unless it is one of many for_each items in flight)."""
    info = workflow.info()
    retry = step.retry or RetrySpec(max_attempts=1)
    request = StepRequest(
        execution_id=info.workflow_id,
        run_id=info.run_id,
        definition_id=run_input.plan.definition_id,
        step_path=step.path,
        kind=step.kind.value,
        params=params,
        item_index=item_index,
        connection=step.connection,
        timeout_s=step.timeout_s,
        max_attempts=retry.max_attempts,
        batch=batch,
        output_budget_bytes=output_budget_bytes,
    )
    activity_id = step.path if item_index is None else f"{step.path}[{item_index}]"
    if batch:
        activity_id = f"{step.path}[{batch[0].item_index}..{batch[-1].item_index}]"
    timeout = timedelta(seconds=step.timeout_s or DEFAULT_TIMEOUT_S)
    policy = RetryPolicy(
        initial_interval=timedelta(seconds=retry.initial_interval_s),
        backoff_coefficient=retry.backoff,
        maximum_interval=timedelta(seconds=retry.max_interval_s),
        maximum_attempts=1 if batch else retry.max_attempts,  # a batch retries its items itself
        non_retryable_error_types=list(retry.non_retryable),
    )
    activity_name = "rte.batch" if batch else f"rte.{step.kind.value}"
    # for_each items run as regular activities: many local activities in flight keep the workflow
    # task open, so their checkpoints would stall the loop.
    if local is None:
        local = step.local and not batch and item_index is None
    routed = run_input.step_task_queues.get(step.kind.value)
    if routed:
        local = False  # its kind runs on workers of its own (e.g. the script sandbox's): never here
    if local:
        try:
            return await workflow.execute_local_activity(
                activity_name,
                request,
                activity_id=activity_id,
                start_to_close_timeout=timeout,
                retry_policy=policy,
                result_type=StepResult,
            )
        except (ActivityError, ApplicationError, TemporalTimeoutError) as failure:
            # A local activity's failure may arrive unwrapped (no ActivityError around it).
            await checkpoint()
            raise StepFailed(activity_error(failure, step, item_index)) from None
        # No checkpoint after a success: a timer costs about a second on some servers, which would
        # make local slower than regular. Local steps may run again if the worker dies first.
    try:
        return await workflow.execute_activity(
            activity_name,
            request,
            activity_id=activity_id,
            task_queue=routed,
            start_to_close_timeout=timeout * len(batch) if batch else timeout,
            retry_policy=policy,
            result_type=StepResult,
            heartbeat_timeout=timeout if batch else None,
        )
    except ActivityError as failure:
        raise StepFailed(activity_error(failure, step, item_index)) from None


async def checkpoint() -> None:
    """Make the worker record a local activity's outcome in history before going on.

    A local activity's outcome is only written when the workflow task completes. When a local step
    fails and the failure ends the execution in the same task, a later replay (a query on the
    closed execution) can miss that outcome; a 1 ms timer ends the task first. Timers are coarse on
    some servers (about a second on the dev server), so this is used on failure only.
    """
    await workflow.sleep(CHECKPOINT_TIMER_S)
