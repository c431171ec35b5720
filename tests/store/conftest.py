"""Every store test runs twice: on a SQLite file and on a real PostgreSQL.

PostgreSQL tests use a private database created for this test session (so they never touch what
other test suites keep in `test`), reset to an empty schema before each test. If PostgreSQL is
unreachable, those variants fail, unless RTE_TEST_SKIP_POSTGRES=1.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from rte.config import Settings
from rte.store import Store

POSTGRES_URL = os.environ.get("RTE_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
SKIP_POSTGRES = os.environ.get("RTE_TEST_SKIP_POSTGRES") == "1"


@dataclass(frozen=True)
class Postgres:
    url: str | None  # SQLAlchemy URL of this session's private database
    problem: str | None = None


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
async def postgres() -> AsyncIterator[Postgres]:
    if SKIP_POSTGRES:
        yield Postgres(None, "RTE_TEST_SKIP_POSTGRES=1")
        return
    try:
        admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as err:
        yield Postgres(
            None,
            f"PostgreSQL at {POSTGRES_URL} is unreachable ({err!r}); start it, or set "
            "RTE_TEST_SKIP_POSTGRES=1 to skip the PostgreSQL variants",
        )
        return
    name = f"rte_store_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield Postgres(make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False))
    finally:
        admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL), timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres: Postgres) -> str:
    """An empty database of each kind; the schema is not created yet."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'rte.db'}"
    if postgres.url is None:
        if SKIP_POSTGRES:
            pytest.skip(postgres.problem or "")
        pytest.fail(postgres.problem or "PostgreSQL is unavailable")
    connection = await asyncpg.connect(_asyncpg_dsn(postgres.url), timeout=5)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()
    return postgres.url


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", database_url=db_url, secret_key=None)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    opened = await Store.open(settings)
    try:
        yield opened
    finally:
        await opened.close()
