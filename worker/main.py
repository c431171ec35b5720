"""Build and run a worker: the interpreter workflow, one activity per step kind, the SQL store."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.expression import ExpressionActivity
from activities.outbound_policy import OutboundPolicy
from activities.python_fn import load_modules
from activities.runtime import StepActivities
from rte.config import Settings
from rte.store import Store
from rte.telemetry import serve_sdk_metrics
from rte.temporal import connect
from worker.health import report_health
from workflows.interpreter import RunPlan

log = logging.getLogger("rte.worker")

# After the drain, cancelled steps get this long to report back before the worker exits anyway.
DRAIN_MARGIN_S = 10.0


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


def build_worker(
    client: Client,
    store: Store,
    settings: Settings,
    task_queue: str | None = None,
    kinds: Collection[str] | None = None,
) -> Worker:
    """A worker for the interpreter workflow and every step kind; with `kinds`, a worker for just
    those kinds' activities (no workflows), e.g. on the task queue `script` steps are routed to."""
    load_modules(settings.function_modules)
    steps = StepActivities(
        connections=store.connections,
        telemetry=StoreTelemetry(store),
        payloads=store.payloads,
        offload_bytes=settings.payload_offload_bytes,
        policy=OutboundPolicy.from_settings(settings),
    )
    activities = [*steps.activities(), ExpressionActivity(store.payloads, settings.payload_offload_bytes).evaluate]
    if kinds is not None:
        # A for_each of these kinds may arrive as one batch activity of their items.
        wanted = {*kinds, "batch"}
        activities = [defn for defn in activities if defn.__name__ in wanted]
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[RunPlan] if kinds is None else [],
        # No sandbox: every module the interpreter runs is passed through it already (so it guarded
        # none of them), and it cost ~0.7 ms of CPU per step re-importing the workflow module per
        # execution and swapping sys.modules around each activation. Determinism is proven by
        # replaying the test suite's histories instead (the lead's replay check).
        workflow_runner=UnsandboxedWorkflowRunner(),
        activities=activities,
        max_concurrent_activities=settings.max_concurrent_activities,
        max_concurrent_local_activities=settings.max_concurrent_activities,
        # On shutdown, in-flight steps get this long to finish before they are cancelled.
        graceful_shutdown_timeout=timedelta(seconds=settings.worker_drain_s),
        # Workflow activations run on this pool; two cores here, so a small pool is plenty.
        workflow_task_executor=ThreadPoolExecutor(max_workers=8, thread_name_prefix="rte-workflow"),
    )


async def run_worker(
    settings: Settings, task_queue: str | None = None, kinds: Collection[str] | None = None
) -> None:
    """Run until SIGINT/SIGTERM, then drain and return.

    Draining: stop polling, give in-flight steps `worker_drain_s` to finish, then cancel the rest,
    which are handed back to Temporal and retried on another worker. Bounded: a step that ignores
    its cancellation cannot keep the process alive past the drain plus a short margin.
    """
    if settings.worker_metrics_address:
        serve_sdk_metrics(settings.worker_metrics_address)
    client = await connect(settings)
    store = await Store.open(settings)
    worker = build_worker(client, store, settings, task_queue, kinds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    health_file, reporting = settings.worker_health_file, None
    try:
        running = asyncio.create_task(worker.run())
        stopping = asyncio.create_task(stop.wait())
        if health_file:
            reporting = asyncio.create_task(report_health(client, running, health_file, worker.task_queue))
        log.info(
            "worker polling task queue %r on %s for %s",
            worker.task_queue,
            settings.temporal_address,
            f"{', '.join(sorted(kinds))} steps" if kinds is not None else "executions and every step kind",
        )
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if running.done():
            running.result()  # the worker failed on its own: raise why
        log.info("draining: in-flight steps have %.0f s to finish", settings.worker_drain_s)
        try:
            await asyncio.wait_for(worker.shutdown(), settings.worker_drain_s + DRAIN_MARGIN_S)
        except TimeoutError:
            log.error(
                "steps still running %.0f s after the drain ended; leaving them to Temporal's timeouts",
                DRAIN_MARGIN_S,
            )
        else:
            log.info("drained; worker stopped")
    finally:
        if reporting is not None and health_file is not None:
            reporting.cancel()
            health_file.unlink(missing_ok=True)  # a stopped worker is not healthy
        await store.close()
