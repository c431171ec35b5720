"""A worker killed with SIGKILL mid-execution: a new worker finishes the execution with the right
output, and the steps that had completed are not run again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from temporalio.client import Client

from rte.config import Settings
from rte.executions import outcome, start_execution
from tests.conftest import Engine

ROOT = Path(__file__).resolve().parents[1]


def _start_worker(client: Client, settings: Settings, task_queue: str, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "RTE_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "RTE_DATA_DIR": str(settings.data_dir),
        "RTE_TASK_QUEUE": task_queue,
        "RTE_FUNCTION_MODULES": "tests.support.functions",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "rte", "worker"],
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _calls(markers: Path, name: str) -> int:
    return len(list(markers.glob(f"{name}.*")))


async def test_worker_killed_mid_execution_resumes_without_rerunning_completed_steps(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    markers = tmp_path / "markers"
    task_queue = f"durability-{uuid.uuid4()}"
    plan = Engine.compile(
        f"""
id: durable
steps:
  - {{id: first, kind: python, with: {{function: record_call, args: {{name: first, marker_dir: "{markers}"}}}}}}
  - {{id: second, kind: python, needs: [first], with: {{function: record_call, args: {{name: second, marker_dir: "{markers}"}}}}}}
  - id: slow
    kind: python
    needs: [second]
    with: {{function: slow_double, args: {{value: 21, seconds: 3}}}}
  - {{id: last, kind: python, needs: [slow], with: {{function: record_call, args: {{name: last, marker_dir: "{markers}"}}}}}}
outputs: {{answer: "${{ .steps.slow.output }}", last: "${{ .steps.last.output }}"}}
"""
    )
    log = tmp_path / "worker.log"
    worker = _start_worker(client, settings, task_queue, log)
    try:
        handle = await start_execution(client, plan, {}, task_queue=task_queue)
        for _ in range(300):  # wait until both quick steps have run and the slow one is under way
            if _calls(markers, "second"):
                break
            await asyncio.sleep(0.05)
        assert _calls(markers, "second") == 1, log.read_text()
        await asyncio.sleep(0.5)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert _calls(markers, "last") == 0  # killed before the end
        worker = _start_worker(client, settings, task_queue, log)
        ok, output = await asyncio.wait_for(outcome(handle), timeout=90)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    assert ok, output
    assert output == {"answer": 42, "last": "last"}
    assert (_calls(markers, "first"), _calls(markers, "second"), _calls(markers, "last")) == (1, 1, 1)
