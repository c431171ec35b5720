"""A real `rte worker` with RTE_WORKER_METRICS_ADDRESS serves the Temporal SDK's Prometheus metrics."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from temporalio.client import Client

from rte.config import Settings
from rte.executions import start_execution
from tests.conftest import Engine
from tests.support.processes import engine_env, free_port, start_worker, stop

DEFINITION = """
id: sdk-metered
steps:
  - id: one
    kind: set
    with: {a: 1}
"""


async def scrape(url: str, process: subprocess.Popen[bytes], want: str, within_s: float = 90) -> str:
    deadline = time.monotonic() + within_s
    text = ""
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, "the worker exited"
            try:
                text = (await http.get(url)).text
            except httpx.HTTPError:
                text = ""
            if want in text:
                return text
            await asyncio.sleep(0.5)
    raise AssertionError(f"{url} never showed {want!r}; last answer: {text[:500]!r}")


async def test_the_worker_serves_temporal_sdk_metrics_on_its_metrics_address(
    client: Client, settings: Settings, tmp_path: Path
) -> None:
    port, task_queue = free_port(), f"sdk-metrics-{uuid.uuid4()}"
    env = engine_env(
        client.service_client.config.target_host,
        settings.data_dir,
        task_queue,
        RTE_WORKER_METRICS_ADDRESS=f"127.0.0.1:{port}",
    )
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        handle = await start_execution(client, Engine.compile(DEFINITION), {}, task_queue=task_queue)
        async with asyncio.timeout(120):
            await handle.result()
        text = await scrape(f"http://127.0.0.1:{port}/metrics", worker, "temporal_workflow_completed")
    finally:
        stop(worker)
    completed = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("temporal_workflow_completed")
        and sample.labels.get("task_queue") == task_queue
    ]
    assert completed and sum(completed) >= 1, text[:2000]


def test_a_metrics_address_must_be_host_and_port() -> None:
    with pytest.raises(ValidationError, match="worker_metrics_address"):
        Settings(worker_metrics_address="9464")
