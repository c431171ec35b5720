"""Scale-out on one machine: one Temporal server, PostgreSQL as the store, two `rte worker`
processes and two API replicas (uvicorn, as `rte up` and the compose file run them) on their own
ports. 100 executions go in through both APIs; one worker and one API are SIGKILLed mid-run. All
executions complete, both workers did work, and a live SSE client moves to the other replica with
Last-Event-ID without missing or repeating an event.

Slow (about a minute): deselect with `-m "not slow"`.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url
from temporalio.client import Client

from rte.config import Settings
from rte.executions import outcome
from rte.store import Store
from rte.store.api_keys import Role
from tests.store.conftest import POSTGRES_URL, SKIP_POSTGRES, _asyncpg_dsn
from tests.support.processes import engine_env, free_port, start_api, start_worker, stop, wait_healthy

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SKIP_POSTGRES, reason="RTE_TEST_SKIP_POSTGRES=1: the store is PostgreSQL here"),
]

RUNS = 100
SSE_STEPS = 10

FLOW = """
id: {id}
inputs: {{type: object, properties: {{n: {{type: integer}}}}}}
steps:
  - id: a
    kind: python
    timeout: 10s
    with: {{function: sleep_then_mark, args: {{seconds: 1, name: '${{ "a" + (.inputs.n | tostring) }}', marker_dir: "{markers}"}}}}
  - id: b
    kind: python
    needs: [a]
    timeout: 10s
    with: {{function: sleep_then_mark, args: {{seconds: 1, name: '${{ "b" + (.inputs.n | tostring) }}', marker_dir: "{markers}"}}}}
outputs: {{n: "${{ .inputs.n }}", b: "${{ .steps.b.output }}"}}
"""


def _chain(definition_id: str, markers: Path) -> str:
    """SSE_STEPS one-second steps in a row: an execution that outlives the API kill."""
    steps = [
        f"  - {{id: s{i}, kind: python, timeout: 10s{f', needs: [s{i - 1}]' if i else ''}, "
        f'with: {{function: sleep_then_mark, args: {{seconds: 1, name: sse{i}, marker_dir: "{markers}"}}}}}}'
        for i in range(SSE_STEPS)
    ]
    return f"id: {definition_id}\nsteps:\n" + "\n".join(steps) + "\n"


@asynccontextmanager
async def _database() -> AsyncIterator[str]:
    """A database of its own for this test's store, dropped afterwards."""
    name = f"rte_scale_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


class Replica:
    def __init__(self, name: str, process: subprocess.Popen[bytes], port: int, key: str) -> None:
        self.name, self.process = name, process
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )


async def _post_run(apis: list[Replica], first: int, definition_id: str, execution_id: str, n: int) -> str:
    """Start a run through apis[first], or through the other one when that replica is gone. The
    chosen execution id makes the retry safe: a 409 means the first attempt did start it."""
    body = {"params": {"n": n}, "execution_id": execution_id}
    for api in (apis[first], apis[1 - first]):
        try:
            response = await api.http.post(f"/definitions/{definition_id}/runs", json=body)
        except httpx.TransportError:
            continue  # that replica was killed
        if response.status_code == 202:
            return api.name
        assert response.status_code == 409, response.text
        return f"{api.name} (409: already started)"
    raise AssertionError(f"no API replica started run {n}")


async def _follow(
    apis: list[Replica], execution_id: str, seen: list[tuple[str, str, str]], errors: list[str]
) -> list[str]:
    """An SSE client, as a browser's EventSource behaves behind a load balancer: when its stream
    ends early it reconnects with Last-Event-ID — to the same replica if the stream merely ended (an
    `error` event, e.g. while a killed worker's executions move to another), to the other one if the
    replica is gone. Appends (replica, event, id) to `seen`; answers the replicas it read from."""
    used: list[str] = []
    current = 0
    for _ in range(30):
        api = apis[current]
        headers = {"Last-Event-ID": seen[-1][2]} if seen else {}
        try:
            async with api.http.stream(
                "GET", f"/executions/{execution_id}/events", headers=headers
            ) as response:
                if used[-1:] != [api.name]:
                    used.append(api.name)
                if response.status_code == 204:
                    return used  # resumed after the very last event
                assert response.status_code == 200, (await response.aread()).decode()
                async for name, event_id in _events(response):
                    if name == "error":
                        errors.append(api.name)
                        continue
                    seen.append((api.name, name, event_id))
                    if name == "execution-complete":
                        return used
        except httpx.TransportError:
            current = 1 - current  # that replica is gone: the load balancer sends us to the other
            continue
        await asyncio.sleep(0.5)
    raise AssertionError(f"the stream never reached execution-complete; saw {seen}")


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    name, event_id = "message", ""
    async for line in response.aiter_lines():
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif not line and name != "message":
            yield name, event_id
            name, event_id = "message", ""


async def _replay(api: Replica, execution_id: str) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    async with api.http.stream("GET", f"/executions/{execution_id}/events") as response:
        async for name, event_id in _events(response):
            events.append((name, event_id))
            if name == "execution-complete":
                break
    return events


def _done_by(markers: Path) -> Counter[str]:
    """Finished steps per worker pid (each marker file names the process that finished the step)."""
    return Counter(path.name.split(".")[1] for path in markers.iterdir()) if markers.exists() else Counter()


async def _until(check: Any, within: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.2)


async def test_two_workers_and_two_apis_survive_losing_one_of_each_mid_run(
    client: Client, tmp_path: Path
) -> None:
    markers, logs = tmp_path / "markers", tmp_path / "logs"
    logs.mkdir()
    suffix = uuid.uuid4().hex[:6]
    async with _database() as database_url:
        env = engine_env(
            client.service_client.config.target_host,
            tmp_path / "data",
            f"scale-{suffix}",
            RTE_DATABASE_URL=database_url,
            RTE_SECRET_KEY=Fernet.generate_key().decode(),
            RTE_WORKER_DRAIN_S="5",
        )
        settings = Settings(
            _env_file=None,
            data_dir=tmp_path / "data",
            database_url=database_url,
            secret_key=env["RTE_SECRET_KEY"],
        )
        store = await Store.open(settings)  # migrates the schema once, before four processes start
        try:
            key = (await store.api_keys.create("scale-out", Role.ADMIN)).key
        finally:
            await store.close()
        workers = [start_worker(env, logs / f"worker{i}.log") for i in (1, 2)]
        ports = [free_port(), free_port()]
        apis = [
            Replica(f"api{i + 1}", start_api(env, port, logs / f"api{i + 1}.log"), port, key)
            for i, port in enumerate(ports)
        ]
        try:
            for api in apis:
                await asyncio.to_thread(wait_healthy, f"{api.url}/health", api.process)
            flow_id, chain_id = f"scale-{suffix}", f"scale-sse-{suffix}"
            for source in (FLOW.format(id=flow_id, markers=markers), _chain(chain_id, markers)):
                saved = await apis[0].http.post("/definitions", json={"source": source})
                assert saved.status_code in (200, 201), saved.text
            followed = await apis[0].http.post(f"/definitions/{chain_id}/runs", json={})
            assert followed.status_code == 202, followed.text
            sse_id = followed.json()["execution_id"]
            seen: list[tuple[str, str, str]] = []
            stream_errors: list[str] = []
            follower = asyncio.create_task(_follow(apis, sse_id, seen, stream_errors))

            worker_pids = [str(worker.pid) for worker in workers]
            ids = [f"scale-{suffix}-{n}" for n in range(RUNS)]
            started: list[str] = []

            async def post(wave: range) -> None:  # concurrently, alternating replicas
                started.extend(
                    await asyncio.gather(*(_post_run(apis, n % 2, flow_id, ids[n], n) for n in wave))
                )

            for first in range(0, 40, 10):
                await post(range(first, first + 10))
            # A worker dies once both have finished steps…
            await _until(
                lambda: all(_done_by(markers)[pid] >= 15 for pid in worker_pids), 90, "both workers working"
            )
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait()
            # …then an API, while the SSE client reads from it and runs are still coming in: the
            # runs meant for it go to the other replica.
            await _until(
                lambda: sum(1 for _, name, _ in seen if name == "step-complete") >= 2,
                90,
                "the SSE client reading",
            )
            apis[0].process.send_signal(signal.SIGKILL)
            apis[0].process.wait()
            for first in range(40, RUNS, 10):
                await post(range(first, first + 10))
            handles = [client.get_workflow_handle(execution_id) for execution_id in ids]
            outcomes = await asyncio.wait_for(asyncio.gather(*(outcome(handle) for handle in handles)), 150)
            used = await asyncio.wait_for(follower, 120)
            replay = await _replay(apis[1], sse_id)
        finally:
            for api in apis:
                await api.http.aclose()
                stop(api.process)
            for worker in workers:
                stop(worker)

    completed = sorted(output["n"] for ok, output in outcomes if ok)
    retried = sum(1 for n in range(40, RUNS, 2) if started[n] == "api2")
    by_worker = _done_by(markers)
    received = [(name, event_id) for _, name, event_id in seen]
    missed = sum((Counter(replay) - Counter(received)).values())
    duplicated = sum((Counter(received) - Counter(replay)).values())
    print(
        f"scale-out: {len(completed)}/{RUNS} completed through 2 APIs ({RUNS - 40} posted after api1's "
        f"SIGKILL, {retried} of them retried on api2); steps finished per worker: "
        f"worker1 {by_worker[worker_pids[0]]} (SIGKILLed), worker2 {by_worker[worker_pids[1]]} "
        f"({sum(by_worker.values()) - 2 * RUNS - SSE_STEPS} finished twice: done by the killed worker, not reported); "
        f"SSE moved {' -> '.join(used)}: {missed} events missed, {duplicated} duplicated of {len(replay)} "
        f"({len(stream_errors)} stream `error` events before a reconnect)"
    )
    assert completed == list(range(RUNS)), [output for ok, output in outcomes if not ok][:3]
    assert all(outcome_[1]["b"].startswith("b") for outcome_ in outcomes)
    assert {name.split(" ")[0] for name in started} == {"api1", "api2"}
    assert retried == (RUNS - 40) // 2  # every run meant for the dead replica went to the other
    assert by_worker[worker_pids[0]] > 0 and by_worker[worker_pids[1]] > 0  # both did work
    assert used[0] == "api1" and used[-1] == "api2", (used, seen)  # it moved to the other replica
    assert {replica for replica, _, _ in seen} == {"api1", "api2"}
    assert received == replay  # in order, none missed, none twice
    assert received[-1][0] == "execution-complete"
    assert sum(1 for name, _ in received if name == "step-complete") == SSE_STEPS
