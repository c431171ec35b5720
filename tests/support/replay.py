"""The determinism check: every workflow history a test session produced is replayed against the
current interpreter code with Temporal's `Replayer`; any non-determinism fails the session.

Histories come from the session's dev server (every test that runs executions there: native and
Serverless Workflow plans, the debugger, recovery, for_each slices, approvals, …), closed or not.
"""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, WorkflowReplayResult

from workflows.interpreter import RunPlan

# Histories fetched at once: the dev server answers a few dozen concurrent reads easily.
FETCH_CONCURRENCY = 16


async def replay_all(client: Client) -> tuple[int, list[str]]:
    """(histories replayed, one line per failure)."""
    ids = [(execution.id, execution.run_id) async for execution in client.list_workflows()]
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def fetch(workflow_id: str, run_id: str | None) -> object:
        async with gate:
            return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()

    histories = await asyncio.gather(*(fetch(workflow_id, run_id) for workflow_id, run_id in ids))
    replayer = Replayer(workflows=[RunPlan], data_converter=pydantic_data_converter)
    failures: list[str] = []
    for history in histories:
        result: WorkflowReplayResult = await replayer.replay_workflow(history, raise_on_replay_failure=False)  # type: ignore[arg-type]
        if result.replay_failure is not None:
            failures.append(f"{history.workflow_id}: {result.replay_failure}")  # type: ignore[attr-defined]
    return len(histories), failures
