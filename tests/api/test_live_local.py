"""The live stream announces local-activity steps as they end, from the worker's record, while the
workflow task that runs them (and so history, and the state query) is still open; resuming from
such an event sends nothing twice; history, the source of truth, fills in the outputs."""

from __future__ import annotations

import asyncio

from temporalio.client import Client, WorkflowExecutionStatus

from rte.store.api_keys import Role
from tests.api.conftest import ApiServer
from tests.api.test_live import SseEvent, collect, sse, start
from workflows.state import ApprovalDecision

# Once approved, `b` runs for seconds inside the same workflow task as `a`: history cannot show `a`
# ended until `b` has ended too, and the execution completes in that very task. (The client
# connects before that task opens: one connecting while it is open has no state until it ends.)
LOCAL_CHAIN = """
id: ID
steps:
  - {id: gate, kind: approval, with: {timeout: 10m}}
  - {id: a, kind: python, local: true, needs: [gate], with: {function: slow_double, args: {value: 1, seconds: 0.05}}}
  - {id: b, kind: python, local: true, needs: [a], with: {function: slow_double, args: {value: 2, seconds: 3}}}
outputs: "${ .steps.b.output }"
"""


async def test_a_local_step_is_announced_from_the_worker_while_its_workflow_task_is_open(
    api_server: ApiServer, client: Client
) -> None:
    handle = await start(client, api_server, LOCAL_CHAIN)
    path = f"/executions/{handle.id}/events"
    first: list[SseEvent] = []
    approving: asyncio.Task[object] | None = None
    async with sse(api_server, path) as stream:
        async with asyncio.timeout(60):
            async for event in stream.events():
                first.append(event)
                if event.event == "waiting":  # approve in the background: the answer waits for the task
                    decision = ApprovalDecision(step="gate", approved=True, by="test")
                    approving = asyncio.create_task(handle.execute_update("decide_approval", decision))
                if event.event == "step-complete" and event.data["step"].endswith("/a"):
                    break
        # `a` ended while `b` still runs: only the worker could have said so.
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    announced = first[-1]
    assert announced.data["step"].endswith("/a"), [event.event for event in first]
    assert announced.data["metrics"]["reported_by"] == "worker"
    assert announced.data["output"] is None  # history has it, once the task ends
    assert announced.data["duration_ms"] >= 50 and announced.data["ended_at"]

    # Resuming from that event (a new watch, since the first client left) sends nothing twice.
    rest = await collect(api_server, path, headers={"Last-Event-ID": announced.id or ""})
    names = [(event.event, event.data.get("step", "").rsplit("/", 1)[-1]) for event in rest]
    assert ("step-start", "a") not in names and ("step-complete", "a") not in names
    assert names[-1] == ("execution-complete", "") and ("step-complete", "b") in names
    assert rest[-1].data["output"] == 4
    assert approving is not None
    await approving

    # History is the source of truth: the state has every output.
    async with api_server.client(Role.VIEWER) as http:
        state = (await http.get(f"/executions/{handle.id}/state")).json()
    assert [step["output"] for step in state["steps"].values()][1:] == [2, 4]
