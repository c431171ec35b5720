"""The engine vs a hand-written Temporal workflow, end to end, on one in-memory dev server.

    python -m bench.bench_engine [--runs 20] [--parts chains,throughput,for_each,large]

Both workers run in processes of their own (`rte worker` and `python -m bench.handwritten`), so each
one's CPU time and memory can be read apart (psutil); this process is only the client. Measured:

- chain latency, client start → result, of 10 no-op `python` steps (regular activities), the same
  chain with `local: true`, and 10 `set` steps, against 10 hand-written activities in a row: median
  of `--runs` alternating runs, each started after 1 s idle, then the same back to back;
- per-step worker CPU time (user + system of the worker process around each chain run);
- throughput: 40 executions of the python chain with 20 in flight (executions/s);
- a 1,000-item for_each (items/s) against a hand-written workflow running one activity per item,
  both with 20 items in flight;
- a 10,000-item for_each on the engine (child slices, 80 items in flight): the worker's peak RSS.

The machine is shared and noisy: only figures measured side by side in one run compare. The load
average is printed with the table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from temporalio.client import Client

from bench.handwritten import ForEachJob, HandWrittenChain, HandWrittenForEach
from rte.executions import start_execution
from rte.temporal import start_dev_server
from rte.watch import worker_available
from workflows.compiler import compile_source
from workflows.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
STEPS = 10
IDLE_GAP_S = 1.0
THROUGHPUT_EXECUTIONS, THROUGHPUT_IN_FLIGHT = 40, 20
FOR_EACH_ITEMS, LARGE_FOR_EACH_ITEMS, FOR_EACH_CONCURRENCY = 1_000, 10_000, 20
# The 10,000-item loop measures memory; more items in flight keep its run short (4 slices at once).
LARGE_FOR_EACH_CONCURRENCY = 80
ROUNDS = 3  # alternating rounds of the throughput and for_each measurements


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


def for_each(concurrency: int) -> str:
    return f"""
id: bench-for-each
inputs: {{type: object, properties: {{items: {{type: array}}}}}}
steps:
  - id: each
    kind: python
    for_each: {{items: "${{ .inputs.items }}", concurrency: {concurrency}}}
    with: {{function: bench_item, args: {{value: "${{ .item }}"}}}}
outputs: {{count: "${{ .steps.each.output | length }}"}}
"""


def compiled(source: str) -> Plan:
    compilation = compile_source(source)
    assert compilation.plan is not None, compilation.diagnostics
    return compilation.plan


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    task_queue: str
    stats: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.stats = psutil.Process(self.process.pid)

    def cpu_s(self) -> float:
        times = self.stats.cpu_times()
        return times.user + times.system

    def rss_mb(self) -> float:
        return self.stats.memory_info().rss / 1e6


def _spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)


@asynccontextmanager
async def worker_process(
    name: str, command: list[str], env: dict[str, str], client: Client, queue: str
) -> AsyncIterator[WorkerProcess]:
    log = Path(env["RTE_DATA_DIR"]) / f"{name}.log"
    process = _spawn(command, env, log)
    try:
        for _ in range(600):
            if process.poll() is not None:
                raise RuntimeError(f"the {name} worker exited; see {log}")
            if await worker_available(client, queue):
                break
            await asyncio.sleep(0.1)
        yield WorkerProcess(name, process, queue)
    finally:
        process.terminate()
        process.wait(30)


class Bench:
    def __init__(self, client: Client, engine: WorkerProcess, handwritten: WorkerProcess) -> None:
        self.client, self.engine, self.handwritten = client, engine, handwritten
        self.plans = {
            "python": compiled(chain("python")),
            "local": compiled(chain("python", local=True)),
            "set": compiled(chain("set")),
            "for_each": compiled(for_each(FOR_EACH_CONCURRENCY)),
            "large_for_each": compiled(for_each(LARGE_FOR_EACH_CONCURRENCY)),
        }

    async def engine_run(self, plan: str, params: dict[str, Any] | None = None) -> Any:
        handle = await start_execution(
            self.client, self.plans[plan], params or {}, task_queue=self.engine.task_queue
        )
        return await handle.result()

    async def handwritten_chain(self) -> None:
        await self.client.execute_workflow(
            HandWrittenChain.run, STEPS, id=f"hw-{uuid.uuid4()}", task_queue=self.handwritten.task_queue
        )

    async def handwritten_for_each(self, items: int) -> list[int]:
        return await self.client.execute_workflow(
            HandWrittenForEach.run,
            ForEachJob(items=items, concurrency=FOR_EACH_CONCURRENCY),
            id=f"hw-each-{uuid.uuid4()}",
            task_queue=self.handwritten.task_queue,
        )

    def chains(self) -> dict[str, tuple[WorkerProcess, Callable[[], Awaitable[Any]]]]:
        return {
            "hand-written": (self.handwritten, self.handwritten_chain),
            "python": (self.engine, lambda: self.engine_run("python")),
            "local": (self.engine, lambda: self.engine_run("local")),
            "set": (self.engine, lambda: self.engine_run("set")),
        }

    async def latencies(self, runs: int, gap_s: float) -> tuple[dict[str, float], dict[str, float]]:
        """Median seconds per chain, and worker CPU seconds per step, over alternating runs."""
        variants = self.chains()
        timings: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, float] = dict.fromkeys(variants, 0.0)
        for _ in range(runs):
            for name, (worker, run) in variants.items():
                await asyncio.sleep(gap_s)
                cpu_before, started = worker.cpu_s(), time.perf_counter()
                await run()
                timings[name].append(time.perf_counter() - started)
                cpu[name] += worker.cpu_s() - cpu_before
        medians = {name: statistics.median(values) for name, values in timings.items()}
        return medians, {name: total / (runs * STEPS) for name, total in cpu.items()}

    async def throughput(self, run: Callable[[], Awaitable[Any]]) -> float:
        slots = asyncio.Semaphore(THROUGHPUT_IN_FLIGHT)

        async def one() -> None:
            async with slots:
                await run()

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(THROUGHPUT_EXECUTIONS)))
        return THROUGHPUT_EXECUTIONS / (time.perf_counter() - started)

    async def for_each_rate(self, engine: bool) -> float:
        started = time.perf_counter()
        if engine:
            result = await self.engine_run("for_each", {"items": list(range(FOR_EACH_ITEMS))})
            assert result == {"count": FOR_EACH_ITEMS}, result
        else:
            assert len(await self.handwritten_for_each(FOR_EACH_ITEMS)) == FOR_EACH_ITEMS
        return FOR_EACH_ITEMS / (time.perf_counter() - started)

    async def large_for_each(self) -> tuple[float, float, float]:
        """(RSS before, peak RSS during, seconds) of the engine worker for a 10,000-item for_each."""
        before, peak = self.engine.rss_mb(), 0.0
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, self.engine.rss_mb())
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        started = time.perf_counter()
        result = await self.engine_run("large_for_each", {"items": list(range(LARGE_FOR_EACH_ITEMS))})
        elapsed = time.perf_counter() - started
        done.set()
        await sampler
        assert result == {"count": LARGE_FOR_EACH_ITEMS}, result
        return before, peak, elapsed


PARTS = ("chains", "throughput", "for_each", "large")


async def main(runs: int, parts: set[str]) -> None:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as data_dir:
        env = await start_dev_server()  # in memory: where the engine's own cost shows most
        client = env.client
        address = client.service_client.config.target_host
        engine_queue, baseline_queue = f"bench-{uuid.uuid4()}", f"bench-hw-{uuid.uuid4()}"
        process_env = os.environ | {
            "RTE_DATA_DIR": data_dir,
            "RTE_TEMPORAL_ADDRESS": address,
            "RTE_TASK_QUEUE": engine_queue,
            "RTE_FUNCTION_MODULES": "bench.functions",
            "PYTHONPATH": str(ROOT),
        }
        engine_command = [sys.executable, "-m", "rte", "worker"]
        baseline_command = [sys.executable, "-m", "bench.handwritten", address, baseline_queue]
        try:
            async with (
                worker_process("engine", engine_command, process_env, client, engine_queue) as engine,
                worker_process("hand-written", baseline_command, process_env, client, baseline_queue) as hw,
            ):
                bench = Bench(client, engine, hw)
                for _, run in bench.chains().values():  # warm up
                    for _ in range(3):
                        await run()
                if "chains" in parts:
                    idle, cpu = await bench.latencies(runs, IDLE_GAP_S)
                    back_to_back, _ = await bench.latencies(runs, 0.0)
                rates: dict[str, list[float]] = {"tp-hw": [], "tp-engine": [], "fe-hw": [], "fe-engine": []}
                for _ in range(ROUNDS):
                    if "throughput" in parts:
                        rates["tp-hw"].append(await bench.throughput(bench.handwritten_chain))
                        rates["tp-engine"].append(await bench.throughput(lambda: bench.engine_run("python")))
                    if "for_each" in parts:
                        rates["fe-hw"].append(await bench.for_each_rate(engine=False))
                        rates["fe-engine"].append(await bench.for_each_rate(engine=True))
                large_figures = await bench.large_for_each() if "large" in parts else None
        finally:
            await env.shutdown()
    rate = {name: statistics.median(values) for name, values in rates.items() if values}
    load_after = os.getloadavg()
    print(f"in-memory dev server; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    if "chains" in parts:
        print_chains(runs, idle, back_to_back, cpu)
    if rate:
        print_rates(rate)
    if large_figures:
        before, peak, elapsed = large_figures
        print(
            f"\nfor_each, {LARGE_FOR_EACH_ITEMS:,} items (child slices, {LARGE_FOR_EACH_CONCURRENCY} in flight): {elapsed:.1f} s, "
            f"{LARGE_FOR_EACH_ITEMS / elapsed:.0f} items/s; engine worker RSS {before:.0f} MB before, "
            f"peak {peak:.0f} MB (goal < 300 MB)"
        )


def print_chains(
    runs: int, idle: dict[str, float], back_to_back: dict[str, float], cpu: dict[str, float]
) -> None:
    print(f"chains of {STEPS} steps, median of {runs} alternating runs; ratio = engine / hand-written\n")
    print(f"{'':28} {'from idle (1 s gap)':>22} {'back to back':>22} {'worker CPU':>12}")
    print(f"{'':28} {'median':>10} {'ratio':>11} {'median':>10} {'ratio':>11} {'per step':>12}")
    labels = {
        "hand-written": "hand-written: 10 activities",
        "python": "engine: 10 python steps",
        "local": "engine: python, local: true",
        "set": "engine: 10 set steps",
    }
    for name, label in labels.items():
        print(
            f"{label:28} {idle[name] * 1000:8.1f}ms {idle[name] / idle['hand-written']:11.2f}"
            f" {back_to_back[name] * 1000:8.1f}ms {back_to_back[name] / back_to_back['hand-written']:11.2f}"
            f" {cpu[name] * 1000:10.2f}ms"
        )


def print_rates(rate: dict[str, float]) -> None:
    print(f"\n{'':44} {'hand-written':>13} {'engine':>9} {'ratio':>7}")
    rows = (
        ("tp", f"throughput, {THROUGHPUT_EXECUTIONS} chains, {THROUGHPUT_IN_FLIGHT} in flight (exec/s)"),
        ("fe", f"for_each, {FOR_EACH_ITEMS:,} items, {FOR_EACH_CONCURRENCY} in flight (items/s)"),
    )
    for key, label in rows:
        if f"{key}-hw" in rate:
            hw, engine = rate[f"{key}-hw"], rate[f"{key}-engine"]
            print(f"{label:44} {hw:13.1f} {engine:9.1f} {engine / hw:7.2f}")
    print(f"(median of {ROUNDS} alternating rounds)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated subset of " + ", ".join(PARTS)
    )
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, set(arguments.parts.split(","))))
