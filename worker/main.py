"""Build and run a worker: the interpreter workflow, one activity per step kind, the SQL store."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.python_fn import load_modules
from activities.runtime import StepActivities
from rte.config import Settings
from rte.store import Store
from rte.temporal import connect
from workflows.interpreter import RunPlan

log = logging.getLogger("rte.worker")


class StoreTelemetry:
    """Writes step logs and per-attempt metrics to the SQL store, committing them in groups.

    `record` returns once the rows are committed (a step's logs are durable when it completes), but
    rows from activities finishing at the same time share one transaction: with many for_each items
    in flight, that is one commit for dozens of attempts instead of two each.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[list[dict[str, Any]], dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, logs: list[dict[str, Any]], metric: dict[str, Any]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((logs, metric, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        await asyncio.shield(done)

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.store.write_telemetry(
                    [row for logs, _metric, _done in batch for row in logs],
                    [metric for _logs, metric, _done in batch],
                )
            except Exception as error:  # noqa: BLE001 - handed to every waiting activity
                for _logs, _metric, done in batch:
                    if not done.done():
                        done.set_exception(error)
                continue
            for _logs, _metric, done in batch:
                if not done.done():
                    done.set_result(None)


def build_worker(client: Client, store: Store, settings: Settings, task_queue: str | None = None) -> Worker:
    load_modules(settings.function_modules)
    steps = StepActivities(
        connections=store.connections,
        telemetry=StoreTelemetry(store),
        payloads=store.payloads,
        offload_bytes=settings.payload_offload_bytes,
    )
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[RunPlan],
        activities=steps.activities(),
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_local_activities=settings.max_concurrent_activities,
        # Workflow activations run on this pool; two cores here, so a small pool is plenty.
        workflow_task_executor=ThreadPoolExecutor(max_workers=8, thread_name_prefix="rte-workflow"),
    )


async def run_worker(settings: Settings, task_queue: str | None = None) -> None:
    """Run until SIGINT/SIGTERM, then finish in-flight tasks and stop."""
    client = await connect(settings)
    store = await Store.open(settings)
    worker = build_worker(client, store, settings, task_queue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with worker:
            log.info("worker polling task queue %r on %s", worker.task_queue, settings.temporal_address)
            await stop.wait()
    finally:
        await store.close()
