"""API fixtures: the real app served by uvicorn on 127.0.0.1, a real Temporal dev server behind it,
a worker for its executions, and one API key per role."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from temporalio.client import Client

from api.main import create_app
from rte.config import Settings
from rte.store import Store
from rte.store.api_keys import Role
from worker.main import build_worker


@dataclass
class ApiServer:
    url: str
    settings: Settings
    keys: dict[Role, str]

    def client(self, role: Role | None = Role.ADMIN, **kwargs: object) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def api_settings(client: Client, settings: Settings) -> Settings:
    """The API and its worker share the test session's data folder and Temporal server."""
    return settings.model_copy(
        update={
            "temporal_address": client.service_client.config.target_host,
            "task_queue": f"api-{uuid.uuid4()}",
        }
    )


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free 127.0.0.1 port (in a thread); yields its base URL."""
    # Port 0: the kernel picks the port as uvicorn binds, so no other process can take it first.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def _uvicorn(api_settings: Settings) -> Iterator[str]:
    with serve(create_app(api_settings)) as url:
        yield url


@pytest.fixture(scope="session")
async def api_server(
    _uvicorn: str, api_settings: Settings, store: Store, client: Client
) -> AsyncIterator[ApiServer]:
    keys = {role: (await store.api_keys.create(f"test {role.value}", role)).key for role in Role}
    async with build_worker(client, store, api_settings):
        yield ApiServer(url=_uvicorn, settings=api_settings, keys=keys)
        await asyncio.sleep(0)
