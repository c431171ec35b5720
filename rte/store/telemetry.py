"""Step telemetry writes: a few small rows for every step attempt, from the worker.

On SQLite the async engine (aiosqlite) hops to its own thread for every statement, the commit and
the connection reset: ~0.85 ms of CPU and a few ms of wall time for one metric row, paid on every
step. Telemetry goes instead through a plain SQLAlchemy engine on the same file, in one thread hop
and one transaction per batch: ~0.3 ms of CPU and under 1 ms of wall time (measured on the 2-core
development machine). PostgreSQL (asyncpg, no thread hops) keeps the async repositories.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine, create_engine, event, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from rte.errors import EngineError, ErrorCategory
from rte.store.repositories import LogRepository, MetricRepository, NewLog, NewMetric
from rte.store.tables import ExecutionLog, StepMetric


class TelemetryWriter:
    def __init__(self, engine: AsyncEngine, logs: LogRepository, metrics: MetricRepository) -> None:
        self._logs, self._metrics = logs, metrics
        url = engine.url
        on_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        self._sync_url = url.set(drivername="sqlite") if on_file else None
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None

    def _sync_engine(self) -> tuple[Engine, ThreadPoolExecutor]:
        """Made on first use (and again after `close`, like the async engine after `dispose`)."""
        if self._sync is None or self._thread is None:
            from rte.store.db import _sqlite_on_connect  # the pragmas of every store connection

            self._sync = create_engine(self._sync_url)  # type: ignore[arg-type]
            event.listen(self._sync, "connect", _sqlite_on_connect)
            # One thread: writes stay in order and share one connection.
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rte-telemetry")
        return self._sync, self._thread

    async def write(self, logs: list[Mapping[str, Any]], metrics: list[Mapping[str, Any]]) -> None:
        """Step logs and attempt metrics, validated, in one transaction where the database allows."""
        if self._sync_url is None:
            await self._logs.add_many(logs)
            await self._metrics.add_many(metrics)
            return
        log_rows = [_validated(NewLog, row, "log entry") for row in logs]
        metric_rows = [_validated(NewMetric, row, "step metric") for row in metrics]
        if log_rows or metric_rows:
            engine, thread = self._sync_engine()
            await asyncio.get_running_loop().run_in_executor(thread, _insert, engine, log_rows, metric_rows)

    async def close(self) -> None:
        """After the writes already queued (same thread), release the connection."""
        engine, thread = self._sync, self._thread
        self._sync = self._thread = None
        if engine is not None and thread is not None:
            await asyncio.get_running_loop().run_in_executor(thread, engine.dispose)
            thread.shutdown(wait=False)


def _insert(engine: Engine, log_rows: list[dict[str, Any]], metric_rows: list[dict[str, Any]]) -> None:
    with engine.begin() as connection:
        if log_rows:
            connection.execute(insert(ExecutionLog), log_rows)
        if metric_rows:
            connection.execute(insert(StepMetric), metric_rows)


def _validated(model: type[BaseModel], row: Mapping[str, Any], what: str) -> dict[str, Any]:
    try:
        return model.model_validate(dict(row)).model_dump()
    except ValidationError as err:
        raise EngineError(ErrorCategory.VALIDATION, f"invalid {what}: {err}") from err
