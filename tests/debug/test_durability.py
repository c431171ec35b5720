"""A paused execution survives a worker SIGKILL, then continues to the right output: the pause is
workflow state (wait_condition), not something a process holds. Paused and waiting executions across
Temporal server restarts (SIGTERM and SIGKILL) are in tests/test_durability.py."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

from temporalio.client import Client

from rte.config import Settings
from rte.executions import outcome, start_execution
from tests.conftest import Engine
from tests.debug.support import command, edit, wait_paused
from tests.test_durability import _start_worker
from workflows.state import Breakpoint, ExecutionConfig

SOURCE = """
id: survive
steps:
  - {{id: first, kind: python, with: {{function: record_call, args: {{name: first, marker_dir: "{markers}"}}}}}}
  - {{id: double, kind: python, needs: [first], with: {{function: slow_double, args: {{value: 20, seconds: 0.1}}}}}}
  - {{id: last, kind: python, needs: [double], with: {{function: add, args: {{a: "${{ .steps.double.output }}", b: 1}}}}}}
outputs: {{last: "${{ .steps.last.output }}"}}
"""


async def test_paused_execution_survives_a_worker_sigkill_and_continues(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    task_queue = f"debug-durable-{uuid.uuid4()}"
    plan = Engine.compile(SOURCE.format(markers=markers))
    log = tmp_path / "worker.log"
    worker = _start_worker(client, settings, task_queue, log)
    try:
        handle = await start_execution(
            client,
            plan,
            {},
            task_queue=task_queue,
            config=ExecutionConfig(breakpoints=[Breakpoint(step="double")]),
        )
        await wait_paused(handle, timeout_s=60)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = _start_worker(client, settings, task_queue, log)
        state = await wait_paused(handle, timeout_s=60)  # the new worker rebuilds the pause from history
        assert state.debug.paused is not None and state.debug.paused.step_path == "survive/double"
        await edit(handle, "input.args.value", 41)
        await command(handle, "continue")
        ok, output = await asyncio.wait_for(outcome(handle), timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert ok and output == {"last": 83}, log.read_text()
    assert len(list(markers.glob("first.*"))) == 1
    print(
        "worker SIGKILL while paused: the new worker rebuilt the pause, edit + continue gave 83, 0 steps re-run"
    )
