"""Follow an execution live: wake on its history long-poll, read the interpreter's state query.

No fixed-interval polling: the history long-poll (`wait_new_event=True`) wakes the watcher when
something happens, and bursts of events are coalesced into one state read. Retrying steps are
found through the workflow's pending activities (attempt > 1), which the workflow itself cannot see.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError

from workflows.state import ExecutionState, StepStatus

MIN_INTERVAL_S = 0.1
QUERY_TIMEOUT = timedelta(seconds=10)


class NoWorkerError(RuntimeError):
    pass


async def read_state(handle: WorkflowHandle) -> ExecutionState:
    try:
        state = await handle.query("state", result_type=ExecutionState, rpc_timeout=QUERY_TIMEOUT)
    except RPCError as error:
        if "deadline" in str(error).lower() or "timeout" in str(error).lower():
            raise NoWorkerError("no worker answered; is `rte worker` (or `rte up`) running?") from error
        raise
    await _mark_retrying(handle, state)
    return state


async def _mark_retrying(handle: WorkflowHandle, state: ExecutionState) -> None:
    running = [step for step in state.steps.values() if step.status == StepStatus.RUNNING]
    if not running:
        return
    description = await handle.describe()
    for pending in description.raw_description.pending_activities:
        path = pending.activity_id.split("[", 1)[0]
        step = state.steps.get(path)
        if step is not None and pending.attempt > 1:
            step.status = StepStatus.RETRYING
            step.attempts = max(step.attempts, pending.attempt)


async def watch(
    client: Client, execution_id: str, run_id: str | None = None
) -> AsyncIterator[ExecutionState]:
    """Yield the execution's state when it changes, and a last time when it has closed."""
    handle = client.get_workflow_handle(execution_id, run_id=run_id)
    changed = asyncio.Event()
    closed = asyncio.Event()

    async def follow_history() -> None:
        try:
            async for _event in handle.fetch_history_events(wait_new_event=True):
                changed.set()
        finally:
            closed.set()
            changed.set()

    follower = asyncio.create_task(follow_history())
    try:
        changed.set()
        while True:
            await changed.wait()
            changed.clear()
            yield await read_state(handle)
            if closed.is_set():
                if follower.done() and follower.exception():
                    raise follower.exception()  # type: ignore[misc]
                return
            await asyncio.sleep(MIN_INTERVAL_S)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await follower


async def execution_closed(handle: WorkflowHandle) -> bool:
    description = await handle.describe()
    return description.status not in (None, WorkflowExecutionStatus.RUNNING)
