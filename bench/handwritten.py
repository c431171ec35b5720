"""The baseline: what a Temporal developer would write by hand for the same work.

`HandWrittenChain` calls a function as N activities in a row; `HandWrittenForEach` runs one activity
per item with bounded concurrency. `python -m bench.handwritten ADDRESS TASK_QUEUE` runs their worker
in a process of its own (so the benchmark can measure its CPU time beside the engine's worker).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from bench.functions import item, noop


@activity.defn(name="bench.noop")
async def noop_activity() -> None:
    return await noop()


@activity.defn(name="bench.item")
async def item_activity(value: int) -> int:
    return await item(value)


@dataclass
class ForEachJob:
    items: int
    concurrency: int


@workflow.defn(name="HandWrittenChain")
class HandWrittenChain:
    @workflow.run
    async def run(self, steps: int) -> int:
        for _ in range(steps):
            await workflow.execute_activity(noop_activity, start_to_close_timeout=timedelta(seconds=30))
        return steps


@workflow.defn(name="HandWrittenForEach")
class HandWrittenForEach:
    @workflow.run
    async def run(self, job: ForEachJob) -> list[int]:
        slots = asyncio.Semaphore(job.concurrency)

        async def one(value: int) -> int:
            async with slots:
                return await workflow.execute_activity(
                    item_activity, value, start_to_close_timeout=timedelta(seconds=30)
                )

        return list(await asyncio.gather(*(one(value) for value in range(job.items))))


async def _serve(address: str, task_queue: str) -> None:
    import signal

    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(address)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[HandWrittenChain, HandWrittenForEach],
        activities=[noop_activity, item_activity],
    )
    async with worker:
        print("ready", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], sys.argv[2]))
