"""SSE latency and fan-out of the live monitor, end to end over HTTP.

    python -m bench.bench_sse [--steps 20] [--runs 5] [--clients 100]

One Temporal dev server, one worker process and one API process (uvicorn), all on this machine:

(c) latency from a step's activity completing to its `step-complete` event reaching a client: the
    step function stamps `time.time()` as it returns, the client stamps the moment it parses the
    event (same machine clock); regular and local activities side by side, one client.
(d) `--clients` SSE clients on one API process following one execution: every client must get every
    event; latency as in (c), and the API process's CPU and memory (psutil) while they stream.

The chain starts behind an approval step, so every client is connected (it has seen `waiting`)
before the first timed step runs. The machine is shared and noisy: compare the rows of one run.

A local activity runs inside the workflow task that started it, so its end reaches the state query
only when that task completes (and the query waits while it is open): the local row measures the
interpreter's scheduling of local activities as much as the SSE path. For regular activities about
18 ms of the median is the API's part (history long-poll wake → state query → diff → send); the rest
is Temporal and the worker recording the completion (ActivityTaskCompleted → WorkflowTaskCompleted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from rte.config import Settings
from rte.executions import start_execution
from rte.functions import function
from rte.store import Store
from rte.store.api_keys import Role
from rte.temporal import start_dev_server
from rte.watch import worker_available
from workflows.compiler import compile_source
from workflows.state import ApprovalDecision

ROOT = Path(__file__).resolve().parents[1]


@function("bench_stamp")
async def stamp(index: int, pause_s: float = 0.05) -> dict[str, Any]:
    """A short step that records, on the worker, the moment its activity completes."""
    await asyncio.sleep(pause_s)
    return {"index": index, "t": time.time()}


def chain(steps: int, local: bool) -> str:
    lines = ["id: bench-sse", "steps:", "  - {id: gate, kind: approval, with: {timeout: 10m}}"]
    previous = "gate"
    for index in range(steps):
        lines.append(
            f"  - {{id: s{index}, kind: python, needs: [{previous}], local: {str(local).lower()}, "
            f"with: {{function: bench_stamp, args: {{index: {index}}}}}}}"
        )
        previous = f"s{index}"
    return "\n".join(lines) + "\n"


@dataclass
class Listener:
    """One SSE client: connects, reports when it is live, and records step-complete latencies."""

    http: httpx.AsyncClient
    path: str
    live: asyncio.Event = field(default_factory=asyncio.Event)
    latencies_ms: list[float] = field(default_factory=list)
    completed_steps: int = 0
    worker_reported: int = 0

    async def run(self) -> None:
        async with self.http.stream("GET", self.path) as response:
            response.raise_for_status()
            name = ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    received = time.time()
                    data = json.loads(line[5:])
                    if name == "waiting":
                        self.live.set()
                    elif name == "step-complete" and "t" in (data.get("output") or {}):
                        self.completed_steps += 1
                        self.latencies_ms.append((received - data["output"]["t"]) * 1000)
                    elif name == "step-complete" and data["metrics"].get("reported_by") == "worker":
                        # Reported from the worker's record (no output): its end is the attempt's.
                        self.completed_steps += 1
                        self.worker_reported += 1
                        ended = datetime.fromisoformat(data["ended_at"]).timestamp()
                        self.latencies_ms.append((received - ended) * 1000)
                    elif name == "execution-complete":
                        return


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return statistics.median(samples), cuts[94], max(samples)


async def follow_run(
    env_client: Any, http: httpx.AsyncClient, plan: Any, queue: str, clients: int, api: psutil.Process | None
) -> tuple[list[Listener], dict[str, float]]:
    handle = await start_execution(env_client, plan, {}, task_queue=queue)
    listeners = [Listener(http, f"/executions/{handle.id}/events") for _ in range(clients)]
    tasks = [asyncio.create_task(listener.run()) for listener in listeners]
    await asyncio.wait_for(asyncio.gather(*(listener.live.wait() for listener in listeners)), 120)
    usage: dict[str, float] = {}
    if api is not None:
        usage["rss_before_mb"] = api.memory_info().rss / 2**20
        api.cpu_percent(None)
    began = time.perf_counter()
    peak = 0.0
    await handle.execute_update("decide_approval", ApprovalDecision(step="gate", approved=True, by="bench"))
    pending = set(tasks)
    while pending:
        _done, pending = await asyncio.wait(pending, timeout=0.2)
        if api is not None:
            peak = max(peak, api.memory_info().rss / 2**20)
    for task in tasks:
        task.result()
    if api is not None:
        usage |= {
            "cpu_percent": api.cpu_percent(None),
            "rss_peak_mb": peak,
            "seconds": time.perf_counter() - began,
        }
    return listeners, usage


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def main(steps: int, runs: int, clients: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        env = await start_dev_server(Path(data_dir) / "temporal.db")
        queue = f"bench-{uuid.uuid4()}"
        settings = Settings(data_dir=Path(data_dir), task_queue=queue)
        store = await Store.open(settings)
        key = (await store.api_keys.create("bench", Role.VIEWER)).key
        port = free_port()
        environment = os.environ | {
            "RTE_DATA_DIR": data_dir,
            "RTE_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "RTE_TASK_QUEUE": queue,
            "RTE_FUNCTION_MODULES": "bench.bench_sse",
        }
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "rte",
            "worker",
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        uvicorn = ["uvicorn", "--factory", "api.main:app", "--port", str(port), "--log-level", "warning"]
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", *uvicorn, cwd=ROOT, env=environment
        )
        limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
        headers = {"Authorization": f"Bearer {key}"}
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120, limits=limits
            ) as http:
                for _ in range(100):
                    try:
                        if (await http.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
                for _ in range(300):  # the worker process polls its task queue
                    if worker.returncode is not None:
                        raise RuntimeError("the worker process exited; run `rte worker` to see why")
                    if await worker_available(env.client, queue):
                        break
                    await asyncio.sleep(0.1)
                print(
                    f"SSE latency: step activity completes → client parses step-complete ({steps} steps/run)"
                )
                print(
                    f"{'variant':48} {'samples':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'by worker':>9}"
                )
                for local in (False, True):
                    plan = compile_source(chain(steps, local)).plan
                    samples: list[float] = []
                    reported = 0
                    for _ in range(runs):
                        listeners, _usage = await follow_run(env.client, http, plan, queue, 1, None)
                        samples += listeners[0].latencies_ms
                        reported += listeners[0].worker_reported
                    p50, p95, worst = percentiles(samples)
                    name = f"(c) 1 client, {'local' if local else 'regular'} activities"
                    print(f"{name:48} {len(samples):7} {p50:8.1f} {p95:8.1f} {worst:8.1f} {reported:9}")
                plan = compile_source(chain(steps, False)).plan
                api = psutil.Process(server.pid)
                listeners, usage = await follow_run(env.client, http, plan, queue, clients, api)
                complete = sum(listener.completed_steps == steps for listener in listeners)
                samples = [value for listener in listeners for value in listener.latencies_ms]
                p50, p95, worst = percentiles(samples)
                name = f"(d) {clients} clients, one execution, regular"
                reported = sum(listener.worker_reported for listener in listeners)
                print(f"{name:48} {len(samples):7} {p50:8.1f} {p95:8.1f} {worst:8.1f} {reported:9}")
                print(
                    f"    {complete}/{clients} clients got all {steps} step-complete events; API process: "
                    f"{usage['cpu_percent']:.0f}% CPU over {usage['seconds']:.1f} s, RSS "
                    f"{usage['rss_before_mb']:.0f} MB with {clients} streams open → peak {usage['rss_peak_mb']:.0f} MB"
                )
        finally:
            for process in (server, worker):
                process.terminate()
                await asyncio.wait_for(process.wait(), 20)
            await store.close()
            await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=100)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.steps, arguments.runs, arguments.clients))
