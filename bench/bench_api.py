"""The API's cost over calling Temporal directly, measured side by side on one dev server.

    python -m bench.bench_api [--runs 40] [--executions 1000]

(a) starting a run: POST /definitions/{id}/runs (load the definition, validate the parameters,
    start) against a direct `client.start_workflow` of the same input;
(b) with that many executions in visibility: GET /executions (a page of 50) against one
    `list_workflow_executions` page, and GET /executions/stats against the same count + list calls
    made directly.

Runs alternate between the two variants, so both see the same machine; the ratios are what matter.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from temporalio.client import Client

from api.main import create_app
from rte.config import Settings
from rte.executions import start_execution
from rte.store import Store
from rte.store.api_keys import Role
from rte.temporal import WORKFLOW_TYPE, start_dev_server
from workflows.compiler import compile_source
from workflows.state import ExecutionInput

SOURCE = """
id: bench-api
inputs:
  type: object
  required: [customer]
  properties:
    customer: {type: string}
    limit: {type: integer, default: 10}
steps:
  - {id: greet, kind: set, with: {text: "Hello ${ .inputs.customer }"}}
"""
PARAMS = {"customer": "ada", "limit": 5}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def compare(
    name: str, runs: int, api: Callable[[], Awaitable[Any]], direct: Callable[[], Awaitable[Any]]
) -> None:
    for _ in range(3):  # warm both paths
        await api()
        await direct()
    api_ms: list[float] = []
    direct_ms: list[float] = []
    for _ in range(runs):
        api_ms.append(await timed(api))
        direct_ms.append(await timed(direct))
    a50, d50 = statistics.median(api_ms), statistics.median(direct_ms)
    a95, d95 = percentile(api_ms, 0.95), percentile(direct_ms, 0.95)
    print(
        f"{name:<28} API p50 {a50:7.1f} ms  p95 {a95:7.1f} ms | direct p50 {d50:7.1f} ms  p95 {d95:7.1f} ms"
        f" | ratio p50 {a50 / d50:4.2f}  p95 {a95 / d95:4.2f}"
    )


def serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


async def populate(client: Client, settings: Settings, count: int) -> None:
    """`count` executions of the definition; about 60 % of them closed (terminated), the rest running."""
    plan = compile_source(SOURCE).plan
    assert plan is not None
    slots = asyncio.Semaphore(32)

    async def one(index: int) -> None:
        async with slots:
            handle = await start_execution(
                client, plan, PARAMS, task_queue=settings.task_queue, definition_version="1"
            )
            if index % 5 < 3:
                await handle.terminate(reason="bench")

    await asyncio.gather(*(one(index) for index in range(count)))


async def main(runs: int, executions: int) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        env = await start_dev_server(Path(data_dir) / "temporal.db")
        client = env.client
        # No worker: starts are measured up to the server's acknowledgement, as a direct start is.
        settings = Settings(
            data_dir=Path(data_dir),
            temporal_address=client.service_client.config.target_host,
            task_queue=f"bench-{uuid.uuid4()}",
        )
        store = await Store.open(settings)
        key = (await store.api_keys.create("bench", Role.ADMIN)).key
        server, thread, url = serve(settings)
        try:
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
            ) as http:
                saved = await http.post("/definitions", json={"source": SOURCE})
                assert saved.status_code == 201, saved.text
                plan = compile_source(SOURCE).plan
                assert plan is not None

                async def api_start() -> None:
                    response = await http.post("/definitions/bench-api/runs", json={"params": PARAMS})
                    assert response.status_code == 202, response.text

                async def direct_start() -> None:
                    await client.start_workflow(
                        WORKFLOW_TYPE,
                        ExecutionInput(plan=plan, params=PARAMS),
                        id=f"bench-direct-{uuid.uuid4().hex[:12]}",
                        task_queue=settings.task_queue,
                    )

                print(f"{runs} alternating runs per variant; dev server on a SQLite file\n")
                await compare("(a) start a run", runs, api_start, direct_start)

                print(f"\npopulating {executions:,} executions…", flush=True)
                await populate(client, settings, executions)
                query = "WorkflowType = 'RunPlan' AND RteDefinitionId = 'bench-api' AND RteDefinitionVersion = '1'"
                total = -1
                for _ in range(120):  # visibility trails the starts a little: wait until it settles
                    await asyncio.sleep(1)
                    count = (await client.count_workflows(query)).count
                    if count == total and count >= executions:
                        break
                    total = count
                print(f"{total:,} executions in visibility for the filter\n")
                filters = {"definition_id": "bench-api", "version": "1"}

                async def api_list() -> None:
                    response = await http.get("/executions", params=filters | {"page_size": 50})
                    assert response.status_code == 200 and len(response.json()["items"]) == 50

                async def direct_list() -> None:
                    page = client.list_workflows(query, page_size=50)
                    await page.fetch_next_page()
                    assert len(page.current_page) == 50

                async def api_stats() -> None:
                    response = await http.get("/executions/stats", params=filters)
                    assert response.status_code == 200 and response.json()["total"] == total, (
                        response.text[:300],
                        total,
                    )

                async def direct_stats() -> None:
                    await client.count_workflows(f"{query} GROUP BY ExecutionStatus")
                    rows = [execution async for execution in client.list_workflows(query, page_size=1000)]
                    assert len(rows) == total

                await compare("(b) list, a page of 50", runs, api_list, direct_list)
                await compare(f"(b) stats over {total:,}", max(5, runs // 4), api_stats, direct_stats)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            await store.close()
            await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--executions", type=int, default=1000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.executions))
