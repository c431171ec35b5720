from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, text
from sqlalchemy.engine import Connection

from rte.errors import EngineError, ErrorCategory
from rte.store import MIGRATIONS_DIR, create_engine, migrate
from rte.store.tables import Base, ExecutionLog

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLES = {"definitions", "execution_logs", "step_metrics", "connections", "api_keys"}
HEAD = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


async def _state(url: str) -> tuple[set[str], list[str]]:
    """The tables present and the rows of alembic_version."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            versions = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars()
            return tables, list(versions)
    finally:
        await engine.dispose()


async def test_migrate_creates_every_table_at_head(db_url: str) -> None:
    await migrate(db_url)
    tables, versions = await _state(db_url)
    assert tables >= TABLES
    assert versions == [HEAD]


async def test_migrating_twice_is_a_no_op_that_keeps_data(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alembic")
    await migrate(db_url)
    assert "Running upgrade" in caplog.text
    engine = create_engine(db_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(ExecutionLog).values(execution_id="e", level="info", message="kept")
            )
        caplog.clear()
        await migrate(db_url)
        assert "Running upgrade" not in caplog.text
        async with engine.connect() as connection:
            count = (await connection.execute(text("SELECT count(*) FROM execution_logs"))).scalar_one()
        assert count == 1
    finally:
        await engine.dispose()
    assert (await _state(db_url))[1] == [HEAD]


async def test_concurrent_migrations_from_several_tasks_all_succeed(db_url: str) -> None:
    await asyncio.gather(*(migrate(db_url) for _ in range(4)))
    tables, versions = await _state(db_url)
    assert tables >= TABLES
    assert versions == [HEAD]


async def test_concurrent_migrations_from_two_processes_both_succeed(db_url: str) -> None:
    script = "import asyncio, sys; from rte.store import migrate; asyncio.run(migrate(sys.argv[1]))"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, db_url, env=env, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    results = await asyncio.gather(*(process.communicate() for process in processes))
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr.decode()
    assert (await _state(db_url))[1] == [HEAD]


async def test_the_migrations_build_exactly_the_schema_the_models_describe(db_url: str) -> None:
    await migrate(db_url)

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    engine = create_engine(db_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


def test_migrations_are_found_next_to_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    names = sorted(path.name for path in (MIGRATIONS_DIR / "versions").glob("*.py"))
    assert names[0] == "0001_initial.py" and names[-1].startswith(f"{HEAD}_")


async def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(EngineError) as caught:
        await migrate("postgresql+asyncpg://rte:hunter2@127.0.0.1:1/rte")
    assert caught.value.category is ErrorCategory.CONFIGURATION
    assert (
        "cannot migrate the database at postgresql+asyncpg://rte:***@127.0.0.1:1/rte" in caught.value.message
    )
    assert "hunter2" not in str(caught.value)


async def test_migrating_different_databases_at_once_in_one_process(db_url: str, tmp_path: Path) -> None:
    other = f"sqlite+aiosqlite:///{tmp_path / 'other' / 'rte.db'}"
    await asyncio.gather(migrate(db_url), migrate(other), migrate(db_url), migrate(other))
    assert (await _state(db_url))[1] == [HEAD]
    assert (await _state(other))[1] == [HEAD]


async def test_an_in_memory_sqlite_database_is_refused_with_a_clear_error() -> None:
    with pytest.raises(EngineError, match="needs a SQLite file or a PostgreSQL URL"):
        await migrate("sqlite+aiosqlite://")
