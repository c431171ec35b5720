"""Real processes for the fault-injection and scale-out tests: workers, API replicas, ports, and
what Temporal recorded about who ran what."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import WorkflowHandle

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_MODULES = "tests.support.functions,tests.support.durability_functions"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def engine_env(temporal_address: str, data_dir: Path, task_queue: str, **extra: str) -> dict[str, str]:
    """What a worker or an API process of the tests runs with (this checkout's code first)."""
    return os.environ | {
        "RTE_TEMPORAL_ADDRESS": temporal_address,
        "RTE_DATA_DIR": str(data_dir),
        "RTE_TASK_QUEUE": task_queue,
        "RTE_FUNCTION_MODULES": FUNCTION_MODULES,
        "PYTHONPATH": str(ROOT),
        **extra,
    }


def start_worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "rte", "worker", *args],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def start_api(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """An API replica as `rte up` and the compose file start it."""
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "api.main:app", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the process behind {url} exited with {process.returncode}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not become healthy in {timeout} s")


def stop(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def running_activities(handle: WorkflowHandle[Any, Any]) -> int:
    """How many of the execution's activities a worker is running right now."""
    description = await handle.describe()
    return sum(
        1
        for pending in description.raw_description.pending_activities
        if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    )


async def activity_starts(handle: WorkflowHandle[Any, Any]) -> list[dict[str, Any]]:
    """Every activity attempt in the history: its id, attempt, the worker identity that ran it, and
    the failure that made Temporal retry it."""
    scheduled: dict[int, str] = {}
    starts: list[dict[str, Any]] = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_id
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            starts.append(
                {
                    "activity_id": scheduled.get(started.scheduled_event_id, "?"),
                    "attempt": started.attempt,
                    "identity": started.identity,
                    "last_failure": started.last_failure.message,
                }
            )
    return starts


async def wait_until(check: Any, within: float, what: str, interval: float = 0.2) -> Any:
    """Poll an async condition until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"{what}: not true within {within} s")
