"""`script` steps on workers of their own: with RTE_SCRIPT_TASK_QUEUE set, the API records the routing
in each execution it starts, and the script steps run only on `rte worker --kinds script` processes
polling that queue — never on the general workers, even when marked `local: true` — while every
other step stays on the main queue.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client

from rte.config import Settings
from rte.executions import outcome
from rte.store import Store
from rte.store.api_keys import Role
from tests.support.processes import engine_env, free_port, start_api, start_worker, stop, wait_healthy

FLOW = """
id: {id}
steps:
  - {{id: double, kind: script, local: true, with: {{code: "result = input * 2", input: 21}}}}
  - {{id: add, kind: python, needs: [double], with: {{function: add, args: {{a: "${{ .steps.double.output }}", b: 0.5}}}}}}
outputs: {{double: "${{ .steps.double.output }}", add: "${{ .steps.add.output }}"}}
"""


async def test_script_steps_run_only_on_the_script_workers_of_their_queue(
    client: Client, settings: Settings, store: Store, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    main_queue, script_queue = f"main-{suffix}", f"scripts-{suffix}"
    env = engine_env(
        client.service_client.config.target_host,
        settings.data_dir,
        main_queue,
        RTE_SCRIPT_TASK_QUEUE=script_queue,
    )
    key = (await store.api_keys.create("routing", Role.ADMIN)).key
    port = free_port()
    general = start_worker(env, tmp_path / "worker.log")
    api = start_api(env, port, tmp_path / "api.log")
    scripts = None
    try:
        await asyncio.to_thread(wait_healthy, f"http://127.0.0.1:{port}/health", api)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as http:
            saved = await http.post("/definitions", json={"source": FLOW.format(id=f"routed-{suffix}")})
            assert saved.status_code in (200, 201), saved.text
            started = await http.post(f"/definitions/routed-{suffix}/runs", json={})
            assert started.status_code == 202, started.text
        handle = client.get_workflow_handle(started.json()["execution_id"])

        async def script_step_waiting() -> bool:
            pending = (await handle.describe()).raw_description.pending_activities
            return any(
                activity.activity_type.name == "rte.script"
                and activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED
                for activity in pending
            )

        for _ in range(300):
            if await script_step_waiting():
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)  # the general worker polls its queue all along…
        assert await script_step_waiting(), "a general worker took the script step"  # …and leaves it
        scripts = start_worker(env, tmp_path / "scripts.log", "--kinds", "script")
        ok, output = await asyncio.wait_for(outcome(handle), 120)
    finally:
        for process in (api, general, scripts):
            if process is not None:
                stop(process)
    assert ok and output == {"double": 42, "add": 42.5}, output
    ran_on: dict[str, tuple[str, str]] = {}
    queues: dict[int, tuple[str, str]] = {}
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled = event.activity_task_scheduled_event_attributes
            queues[event.event_id] = (scheduled.activity_type.name, scheduled.task_queue.name)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started_event = event.activity_task_started_event_attributes
            kind, queue = queues[started_event.scheduled_event_id]
            ran_on[kind] = (queue, started_event.identity.split("@")[0])
    print(f"script routing: {ran_on}")
    assert ran_on == {
        "rte.script": (script_queue, str(scripts.pid)),
        "rte.python": (main_queue, str(general.pid)),
    }
