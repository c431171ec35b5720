"""No connection secret anywhere (issue 9, point 5).

One distinctive secret per auth type (bearer, basic, api_key header, api_key query, ai key), on the
real stack: the API (uvicorn, in this process), a real `rte worker` process (its own logging
set-up), the session's Temporal dev server, the store on SQLite and on PostgreSQL. Each step's
service fails the first call quoting the credentials back, then redirects to another origin
(query string kept); the other origin echoes whatever it got into the step's output. Then every
place a secret could land is searched: every event of the execution's Temporal history, the store
(the SQLite files' bytes / every PostgreSQL table), every log (the worker process's output, every
record logged in this process at DEBUG, the log table), every GET the API offers, and its SSE
streams. The figure printed is the occurrence count per place; all must be 0.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from sqlalchemy.engine import make_url
from temporalio.client import Client

from api.main import create_app
from rte.config import Settings
from rte.store import Store
from rte.store.api_keys import Role
from tests.security.services import CarelessService
from tests.store.conftest import POSTGRES_URL, SKIP_POSTGRES
from tests.support.processes import engine_env, free_port, start_worker, stop

TAG = secrets.token_hex(4)
SECRETS = {
    "bearer": f"bearer-{TAG}-Zq81",
    "basic": f"basic-{TAG}-Wp27",
    "api_key header": f"header-{TAG}-Xk53",
    "api_key query": f"query-{TAG}-Vt64",
    "ai key": f"sk-ai-{TAG}-Ry95",
}
BASIC_USER = "ada"


def needles() -> dict[str, list[bytes]]:
    """Each secret as it could be written down: raw, base64, hex, and basic auth's header value."""
    found: dict[str, list[bytes]] = {}
    for name, value in SECRETS.items():
        raw = value.encode()
        found[name] = [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), raw.hex().encode()]
    found["basic"].append(base64.b64encode(f"{BASIC_USER}:{SECRETS['basic']}".encode()))
    return found


def definition(definition_id: str) -> str:
    retry = "retry: {max_attempts: 3, initial_interval: 100ms}"
    return f"""
id: {definition_id}
connections: [leak-bearer, leak-basic, leak-header, leak-query, leak-ai]
steps:
  - {{id: bearer, kind: http, connection: leak-bearer, with: {{url: /call/bearer}}, {retry}}}
  - id: basic
    kind: http
    connection: leak-basic
    with: {{method: POST, url: /call/basic, body: {{order: 1}}}}
    {retry}
  - {{id: header, kind: http, connection: leak-header, local: false, with: {{url: /call/header}}, {retry}}}
  - {{id: query, kind: http, connection: leak-query, with: {{url: "/call/query?page=1", query: {{q: x}}}}, {retry}}}
  - {{id: ai, kind: ai, connection: leak-ai, with: {{model: tiny, prompt: hello}}, {retry}}}
outputs:
  bearer: "${{ .steps.bearer.output }}"
  basic: "${{ .steps.basic.output }}"
  header: "${{ .steps.header.output }}"
  query: "${{ .steps.query.output }}"
  ai: "${{ .steps.ai.output }}"
"""


def connections(origin: str) -> dict[str, dict[str, Any]]:
    return {
        "leak-bearer": {
            "type": "bearer",
            "config": {"base_url": origin},
            "secret": {"token": SECRETS["bearer"]},
        },
        "leak-basic": {
            "type": "basic",
            "config": {"base_url": origin, "username": BASIC_USER},
            "secret": {"password": SECRETS["basic"]},
        },
        "leak-header": {
            "type": "api_key",
            "config": {"base_url": origin, "header": "X-Service-Key"},
            "secret": {"key": SECRETS["api_key header"]},
        },
        "leak-query": {
            "type": "api_key",
            "config": {"base_url": origin, "query_param": "api_key"},
            "secret": {"key": SECRETS["api_key query"]},
        },
        "leak-ai": {
            "type": "openai",
            "config": {"base_url": f"{origin}/v1"},
            "secret": {"api_key": SECRETS["ai key"]},
        },
    }


@dataclass
class Stack:
    url: str
    settings: Settings
    keys: dict[Role, str]
    worker_log: Path
    database: str  # "sqlite" or "postgresql"

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {self.keys[Role.ADMIN]}"}, timeout=60
        )


@pytest.fixture
def services() -> Iterator[tuple[CarelessService, CarelessService]]:
    elsewhere = CarelessService().start()
    origin = CarelessService(elsewhere=elsewhere).start()
    yield origin, elsewhere
    origin.stop()
    elsewhere.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, str | None]]:
    """(kind, URL): the default SQLite file in the data folder, or a private PostgreSQL database."""
    if request.param == "sqlite":
        yield "sqlite", None
        return
    if SKIP_POSTGRES:
        pytest.skip("RTE_TEST_SKIP_POSTGRES=1")
    dsn = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"rte_leak_{TAG}_{secrets.token_hex(3)}"
    admin = await asyncpg.connect(dsn, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield "postgresql", make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn, timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def stack(database: tuple[str, str | None], client: Client, tmp_path: Path) -> AsyncIterator[Stack]:
    kind, database_url = database
    port = free_port()
    temporal = client.service_client.config.target_host
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        temporal_address=temporal,
        task_queue=f"leak-{uuid.uuid4()}",
        api_url=f"http://127.0.0.1:{port}",
        outbound_allow=["127.0.0.0/8"],
    )
    store = await Store.open(settings)
    keys = {role: (await store.api_keys.create(f"leak {role.value}", role)).key for role in Role}
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="debug", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    env = engine_env(
        temporal,
        settings.data_dir,
        settings.task_queue,
        RTE_OUTBOUND_ALLOW="127.0.0.0/8",
        RTE_API_URL=f"http://127.0.0.1:{port}",
        **({"RTE_DATABASE_URL": database_url} if database_url else {}),
    )
    worker_log = tmp_path / "worker.log"
    worker = start_worker(env, worker_log)
    try:
        deadline = time.monotonic() + 90
        while not (server.started and "worker polling task queue" in _read(worker_log)):
            assert worker.poll() is None, _read(worker_log)
            assert time.monotonic() < deadline, "the API or the worker did not start"
            await asyncio.sleep(0.2)
        yield Stack(f"http://127.0.0.1:{port}", settings, keys, worker_log, kind)
    finally:
        stop(worker)
        server.should_exit = True
        thread.join(timeout=10)
        await store.close()


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


# Where to look ------------------------------------------------------------------------------------


async def history_bytes(client: Client, execution_id: str) -> bytes:
    events = [event async for event in client.get_workflow_handle(execution_id).fetch_history_events()]
    assert len(events) > 10, "the history was not read"
    return b"".join(event.SerializeToString() for event in events)


async def store_bytes(stack: Stack) -> bytes:
    if stack.database == "sqlite":
        files = [path for path in stack.settings.data_dir.rglob("*") if path.is_file()]
        assert any(path.name == "rte.db" for path in files)
        return b"".join(path.read_bytes() for path in files)
    dsn = (
        make_url(stack.settings.database_url or "")
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        tables = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        dumped = []
        for row in tables:
            rows = await connection.fetch(f'SELECT t::text AS line FROM "{row["tablename"]}" AS t')
            dumped.extend(record["line"] for record in rows)
    finally:
        await connection.close()
    assert len(tables) > 5 and dumped
    return "\n".join(dumped).encode()


async def api_bytes(
    http: httpx.AsyncClient, execution_id: str, definition_id: str, steps: list[str]
) -> tuple[bytes, bytes, int]:
    """Every GET the API offers, filled with this run's ids; the SSE streams apart. (bodies, streams, count)"""
    spec = (await http.get("/openapi.json")).json()
    patterns = (await http.get("/errors/patterns", params={"window": "1h"})).json().get("patterns", [])
    values: dict[str, list[str]] = {
        "execution_id": [execution_id],
        "definition_id": [definition_id],
        "step_path": steps,
        "connection_id": list(connections("http://x")),
        "fingerprint": [pattern["fingerprint"] for pattern in patterns],
    }
    bodies, streams, count = [], [], 0
    for template, operations in spec["paths"].items():
        if "get" not in operations:
            continue
        urls = [template]
        for name, options in values.items():
            if "{" + name + "}" in template:
                urls = [url.replace("{" + name + "}", option) for url in urls for option in options]
        for url in urls:
            if "{" in url:
                continue  # an id this run has none of (presets, schedules, compilations)
            if url.endswith("/stream") or url.endswith("/events"):
                streams.append(await read_stream(http, url))
            else:
                extra = [{"part": "input"}] if url.endswith("/payload") else []
                for params in [{}, *extra]:
                    response = await http.get(url, params=params)
                    assert response.status_code < 500, (url, response.text)
                    bodies.append(response.content + repr(dict(response.headers)).encode())
            count += 1
    for position in range(len(steps) + 1):
        bodies.append(
            (
                await http.get(f"/executions/{execution_id}/debug/replay", params={"position": position})
            ).content
        )
    return b"\n".join(bodies), b"\n".join(streams), count


async def read_stream(http: httpx.AsyncClient, url: str, seconds: float = 4.0) -> bytes:
    """An SSE stream for a few seconds (a finished execution's streams may stay open)."""
    received = bytearray()
    try:
        async with asyncio.timeout(seconds):
            async with http.stream("GET", url, headers={"Accept": "text/event-stream"}) as response:
                assert response.status_code < 500, url
                async for chunk in response.aiter_bytes():
                    received.extend(chunk)
    except TimeoutError:
        pass
    return bytes(received)


def occurrences(corpus: bytes) -> dict[str, int]:
    return {name: sum(corpus.count(form) for form in forms) for name, forms in needles().items()}


async def test_no_secret_reaches_history_store_logs_api_or_streams(
    stack: Stack,
    services: tuple[CarelessService, CarelessService],
    client: Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    origin, elsewhere = services
    definition_id = f"leak-{TAG}-{stack.database}"
    async with stack.http() as http:
        for connection_id, body in connections(origin.url).items():
            put = await http.put(f"/connections/{connection_id}", json=body)
            assert put.status_code == 200, put.text
        saved = await http.post("/definitions", json={"source": definition(definition_id)})
        assert saved.status_code in (200, 201), saved.text
        started = await http.post(f"/definitions/{definition_id}/runs", json={})
        assert started.status_code == 202, started.text
        execution_id = started.json()["execution_id"]
        deadline = asyncio.get_running_loop().time() + 120
        while (detail := (await http.get(f"/executions/{execution_id}")).json())["status"] == "running":
            assert asyncio.get_running_loop().time() < deadline, detail
            await asyncio.sleep(0.3)
        assert detail["status"] == "completed", detail

        # The secrets really went out, to the origin and only there: the search below can fail.
        sent = "\n".join(seen.text() for seen in origin.seen)
        assert all(value in sent for name, value in SECRETS.items() if name != "basic")
        assert base64.b64encode(f"{BASIC_USER}:{SECRETS['basic']}".encode()).decode() in sent
        assert len(origin.seen) == 10 and len(elsewhere.seen) == 5  # each step: failed once, redirected
        steps = [f"{definition_id}/{step}" for step in ("bearer", "basic", "header", "query", "ai")]
        api, streams, offered = await api_bytes(http, execution_id, definition_id, steps)

    places = {
        "the other origin's requests": "\n".join(seen.text() for seen in elsewhere.seen).encode(),
        "Temporal history": await history_bytes(client, execution_id),
        f"store ({stack.database})": await store_bytes(stack),
        "worker process log": stack.worker_log.read_bytes(),
        "logs in this process (API, DEBUG)": caplog.text.encode(),
        f"API responses ({offered} GET operations)": api,
        "SSE streams": streams,
    }
    assert b"worker polling task queue" in places["worker process log"]
    assert execution_id.encode() in places["SSE streams"] and execution_id.encode() in api
    found = {place: occurrences(corpus) for place, corpus in places.items()}
    print(f"\nsecret occurrences ({stack.database}), per place and auth type:")
    for place, counts in found.items():
        print(f"  {place:45} {sum(counts.values()):3}  {counts}")
    assert {place: sum(counts.values()) for place, counts in found.items()} == dict.fromkeys(places, 0)
