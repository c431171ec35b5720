"""A paused execution survives a worker SIGKILL and a Temporal server restart, then continues to the
right output: the pause is workflow state (wait_condition), not something a process holds."""

from __future__ import annotations

import asyncio
import signal
import socket
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from rte.config import Settings
from rte.executions import outcome, start_execution
from rte.store import Store
from rte.temporal import SEARCH_ATTRIBUTES, find_temporal_binary
from tests.conftest import Engine
from tests.debug.support import command, edit, wait_for, wait_paused
from tests.test_durability import _start_worker
from worker.main import build_worker
from workflows.state import Breakpoint, ExecutionConfig, RecoveryDecision

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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _server(database: Path, port: int) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_temporal_binary(),
        dev_server_database_filename=str(database),
        port=port,
        search_attributes=SEARCH_ATTRIBUTES if not database.exists() else (),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )


async def test_paused_and_awaiting_decision_survive_a_server_restart(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    database, port = tmp_path / "temporal.db", _free_port()
    markers = tmp_path / "markers"
    task_queue = f"restart-{uuid.uuid4()}"
    plan = Engine.compile(SOURCE.format(markers=markers))
    failing = Engine.compile(
        """
id: decide
steps:
  - {id: bad, kind: python, with: {function: fail_on, args: {value: 1, bad: [1]}}, on_error: pause}
"""
    )
    env = await _server(database, port)
    try:
        async with build_worker(env.client, store, settings, task_queue):
            paused = await start_execution(
                env.client,
                plan,
                {},
                task_queue=task_queue,
                config=ExecutionConfig(breakpoints=[Breakpoint(step="last")]),
            )
            waiting = await start_execution(env.client, failing, {}, task_queue=task_queue)
            await wait_paused(paused, timeout_s=60)
            await wait_for(waiting, lambda s: s.steps["decide/bad"].awaiting_decision, timeout_s=60)
    finally:
        await env.shutdown()
    env = await _server(database, port)
    try:
        async with build_worker(env.client, store, settings, task_queue):
            paused = env.client.get_workflow_handle(paused.id)
            waiting = env.client.get_workflow_handle(waiting.id)
            state = await wait_paused(paused, timeout_s=60)
            assert state.debug.paused is not None and state.debug.paused.step_path == "survive/last"
            await command(paused, "continue")
            await waiting.execute_update(
                "decide_recovery", RecoveryDecision(step="bad", action="skip", output="skipped")
            )
            assert await asyncio.wait_for(outcome(paused), timeout=60) == (True, {"last": 41})
            assert await asyncio.wait_for(outcome(waiting), timeout=60) == (True, {"bad": "skipped"})
    finally:
        await env.shutdown()
    assert len(list(markers.glob("first.*"))) == 1
