"""The dev server `rte up` runs keeps SQLite in WAL mode with synchronous=NORMAL: a kill -9 of the
server mid-run loses no execution (a process crash leaves the log in the OS's page cache)."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from rte.config import Settings
from rte.executions import outcome, start_execution
from rte.store import Store
from rte.temporal import connect, find_temporal_binary, persistent_dev_server_command
from tests.conftest import Engine
from worker.main import build_worker

EXECUTIONS = 6
STEPS = 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_server(database: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = persistent_dev_server_command(find_temporal_binary(), database, port=port, ui_port=None)
    return subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def _connect(settings: Settings, server: subprocess.Popen[bytes], log: Path) -> Client:
    for _ in range(600):
        assert server.poll() is None, log.read_text()
        try:
            return await connect(settings)
        except RuntimeError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"the dev server did not answer within 60 s:\n{log.read_text()}")


async def _has_completed_a_step(handle: WorkflowHandle[Any, Any]) -> bool:
    history = await handle.fetch_history()
    return any(event.HasField("activity_task_completed_event_attributes") for event in history.events)


async def test_server_killed_mid_run_loses_no_execution(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    database, log, port = tmp_path / "temporal.db", tmp_path / "temporal.log", _free_port()
    server_settings = settings.model_copy(update={"temporal_address": f"127.0.0.1:{port}"})
    steps = [
        f"  - {{id: s{i}, kind: python{f', needs: [s{i - 1}]' if i else ''}, "
        f"with: {{function: slow_double, args: {{value: {i}, seconds: 0.4}}}}}}"
        for i in range(STEPS)
    ]
    plan = Engine.compile(
        "id: kill-server\nsteps:\n" + "\n".join(steps) + '\noutputs: {last: "${ .steps.s3.output }"}\n'
    )
    server = _start_server(database, port, log)
    try:
        client = await _connect(server_settings, server, log)
        task_queue = f"kill-server-{uuid.uuid4()}"
        async with build_worker(client, store, settings, task_queue):
            handles = [
                await start_execution(client, plan, {}, task_queue=task_queue) for _ in range(EXECUTIONS)
            ]
            # Kill once every execution has made progress (a step completed) but none has finished.
            for _ in range(600):
                if all([await _has_completed_a_step(handle) for handle in handles]):
                    break
                await asyncio.sleep(0.05)
            assert all([await _has_completed_a_step(handle) for handle in handles]), log.read_text()
            statuses = [(await handle.describe()).status for handle in handles]
            assert statuses == [WorkflowExecutionStatus.RUNNING] * EXECUTIONS, log.read_text()
            server.send_signal(signal.SIGKILL)
            server.wait()
            server = _start_server(database, port, log)
            await _connect(server_settings, server, log)
            results = await asyncio.wait_for(
                asyncio.gather(*(outcome(handle) for handle in handles)), timeout=120
            )
        assert results == [(True, {"last": 6})] * EXECUTIONS
        with sqlite3.connect(database) as db:  # the pragma `rte up` asks for is what the file uses
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
