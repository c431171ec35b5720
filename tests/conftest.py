"""Shared fixtures: one real Temporal dev server per session, a worker per test on its own task
queue, a real SQLite store, a real HTTP server for the services steps call."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from rte.config import Settings
from rte.executions import outcome, start_execution
from rte.store import Store
from rte.temporal import start_dev_server
from tests.support.http_server import TestServer
from tests.support.replay import replay_all
from worker.main import build_worker
from workflows.compiler import compile_source
from workflows.plan import Plan
from workflows.state import ExecutionConfig, ExecutionState

SHARED = Path(__file__).resolve().parents[2] / "shared"


REPLAY_SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in REPLAY_SUMMARY:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    yield env
    try:
        # Every history the session produced must replay against the current code.
        replayed, failures = await replay_all(env.client)
        REPLAY_SUMMARY.append(f"replay check: {replayed} histories replayed, {len(failures)} non-deterministic")
        assert not failures, "histories that do not replay:\n" + "\n".join(failures[:20])
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir = tmp_path_factory.mktemp("rte-data")
    # The services steps call in tests are real servers on 127.0.0.1: loopback is allowed here,
    # explicitly (the default outbound policy refuses it). tests/security covers refused settings.
    return Settings(
        data_dir=data_dir,
        function_modules=["tests.support.functions"],
        outbound_allow=["127.0.0.0/8", "::1"],
    )


@pytest.fixture(scope="session")
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings)
    yield opened
    await opened.close()


@pytest.fixture
def http_server() -> Iterator[TestServer]:
    server = TestServer().start()
    yield server
    server.stop()


class Engine:
    """Runs definitions on a worker of its own (fresh task queue) and reports what happened."""

    def __init__(self, client: Client, store: Store, settings: Settings, task_queue: str) -> None:
        self.client, self.store, self.settings, self.task_queue = client, store, settings, task_queue

    @staticmethod
    def compile(source: str) -> Plan:
        compilation = compile_source(source, "test.yaml")
        errors = [d for d in compilation.diagnostics if d.severity == "error"]
        assert compilation.ok and compilation.plan is not None, errors
        return compilation.plan

    async def start(
        self, source: str | Plan, params: dict[str, Any] | None = None, config: ExecutionConfig | None = None
    ) -> Any:
        plan = source if isinstance(source, Plan) else self.compile(source)
        return await start_execution(
            self.client, plan, params or {}, task_queue=self.task_queue, config=config
        )

    async def run(
        self, source: str | Plan, params: dict[str, Any] | None = None, config: ExecutionConfig | None = None
    ) -> tuple[bool, Any, ExecutionState]:
        handle = await self.start(source, params, config)
        ok, result = await outcome(handle)
        state = await handle.query("state", result_type=ExecutionState)
        return ok, result, state


@asynccontextmanager
async def running_engine(client: Client, store: Store, settings: Settings) -> AsyncIterator[Engine]:
    task_queue = f"test-{uuid.uuid4()}"
    async with build_worker(client, store, settings, task_queue):
        yield Engine(client, store, settings, task_queue)


@pytest.fixture
async def engine(client: Client, store: Store, settings: Settings) -> AsyncIterator[Engine]:
    async with running_engine(client, store, settings) as running:
        yield running
