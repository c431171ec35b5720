"""Engine vs hand-written Temporal workflow, end to end, on the same dev server, alternating runs.

    python -m bench.bench_engine [--runs 20]

Prints the median client start → result time of each variant and its ratio to the hand-written
workflow measured in the same run (the machine is shared and noisy: only the ratios mean much).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from temporalio.worker import Worker

from bench.handwritten import HandWrittenChain, noop_activity
from rte.config import Settings
from rte.executions import start_execution
from rte.store import Store
from rte.temporal import start_dev_server
from worker.main import build_worker
from workflows.compiler import compile_source

STEPS = 10


def chain(kind: str, local: bool | None = None) -> str:
    lines = ["id: bench-chain", "steps:"]
    for index in range(STEPS):
        needs = f", needs: [s{index - 1}]" if index else ""
        if kind == "python":
            extra = "" if local is None else f", local: {str(local).lower()}"
            lines.append(f"  - {{id: s{index}, kind: python{needs}{extra}, with: {{function: bench_noop}}}}")
        else:
            lines.append(f"  - {{id: s{index}, kind: set{needs}, with: {{i: {index}}}}}")
    return "\n".join(lines) + "\n"


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        env = await start_dev_server(Path(data_dir) / "temporal.db")
        settings = Settings(data_dir=Path(data_dir), function_modules=["bench.functions"])
        store = await Store.open(settings)
        queue = f"bench-{uuid.uuid4()}"
        baseline_queue = f"bench-baseline-{uuid.uuid4()}"
        plans = {
            "engine: 10 python steps": compile_source(chain("python")).plan,
            "engine: 10 python, local: true": compile_source(chain("python", local=True)).plan,
            "engine: 10 set steps": compile_source(chain("set")).plan,
        }
        client = env.client

        async def handwritten() -> None:
            await client.execute_workflow(
                HandWrittenChain.run, STEPS, id=f"hw-{uuid.uuid4()}", task_queue=baseline_queue
            )

        def engine(plan_name: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                handle = await start_execution(client, plans[plan_name], {}, task_queue=queue, eager=True)
                await handle.result()

            return run

        variants: dict[str, Callable[[], Awaitable[None]]] = {"hand-written: 10 activities": handwritten}
        variants |= {name: engine(name) for name in plans}
        timings: dict[str, list[float]] = {name: [] for name in variants}
        engine_worker = build_worker(client, store, settings, queue)
        baseline_worker = Worker(
            client, task_queue=baseline_queue, workflows=[HandWrittenChain], activities=[noop_activity]
        )
        async with engine_worker, baseline_worker:
            for variant in variants.values():  # warm up
                for _ in range(3):
                    await variant()
            for _ in range(runs):  # alternate, so drift in machine load hits every variant alike
                for name, variant in variants.items():
                    started = time.perf_counter()
                    await variant()
                    timings[name].append(time.perf_counter() - started)
        await store.close()
        await env.shutdown()
    baseline = statistics.median(timings["hand-written: 10 activities"])
    print(f"{'variant':34} {'median':>9} {'ratio':>7}   ({runs} runs each)")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"{name:34} {median * 1000:7.1f}ms {median / baseline:7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    asyncio.run(main(parser.parse_args().runs))
