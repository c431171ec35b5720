"""Engines, sessions, schema migration, and the `Store` that bundles the repositories."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from weakref import WeakKeyDictionary

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import event, exc, pool, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from rte.config import Settings, get_settings
from rte.errors import EngineError, ErrorCategory
from rte.private_files import private_dir, private_sqlite_file
from rte.store.api_keys import ApiKeyRepository
from rte.store.compilations import CompilationRepository
from rte.store.connections import ConnectionStore, SecretBox
from rte.store.errors import ErrorRepository
from rte.store.payloads import PayloadRepository
from rte.store.presets import PresetRepository
from rte.store.repositories import DefinitionRepository, LogRepository, MetricRepository
from rte.store.telemetry import TelemetryWriter
from rte.store.webhooks import WebhookRepository

try:  # POSIX only; elsewhere SQLite's own locking is all we have.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary constant key for the PostgreSQL advisory lock that serialises migrations ("rte-migr").
_PG_MIGRATION_LOCK = 0x7274652D6D696772
SessionFactory = async_sessionmaker[AsyncSession]
# Alembic keeps its running context in module globals, so one process must run one migration at a
# time even on different databases: an asyncio lock per event loop, and a thread lock across loops.
_ALEMBIC_LOCK = threading.Lock()
_LOOP_LOCKS: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(parsed, pool_pre_ping=True, **kwargs)
    if (db_file := _sqlite_file(parsed)) is not None:
        db_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        private_sqlite_file(db_file)  # 0600, and so its -wal and -shm files
    engine = create_async_engine(parsed, **kwargs)
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


def session_factory(engine: AsyncEngine) -> SessionFactory:
    # Repositories return plain models built inside the session, so nothing needs a refresh.
    return async_sessionmaker(engine, expire_on_commit=False)


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # busy_timeout first: switching to WAL itself needs a lock another process may hold.
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def migrate(url: str) -> None:
    """Bring the schema at `url` to the latest revision.

    Safe to call from several processes at once (the worker and the API both do at start-up): a
    lock serialises them, and whoever comes second finds the schema at head and does nothing.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and _sqlite_file(parsed) is None:
        # Each connection to an in-memory database sees a new, empty one: nothing would persist.
        raise EngineError(
            ErrorCategory.CONFIGURATION,
            f"the store needs a SQLite file or a PostgreSQL URL, not {url!r}; "
            "e.g. sqlite+aiosqlite:///path/to/rte.db",
        )
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        async with _in_process_lock(), _migration_lock(engine), engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Held until this transaction ends; PostgreSQL DDL is transactional, so the
                # whole upgrade commits (or not) with it.
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            await connection.run_sync(_upgrade_to_head)
    except CommandError as err:
        raise EngineError(
            ErrorCategory.CONFIGURATION,
            f"cannot migrate the database at {_safe_url(url)}: {err} "
            "(was it created by a newer version of Runtime Engine?)",
        ) from err
    except (OSError, exc.DBAPIError) as err:
        raise EngineError(
            ErrorCategory.CONFIGURATION,
            f"cannot migrate the database at {_safe_url(url)}: {err}",
        ) from err
    finally:
        await engine.dispose()


def _alembic_config() -> Config:
    config = Config()
    # ConfigParser interpolation: a literal '%' in the path must be doubled.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return config


def _upgrade_to_head(connection: Connection) -> None:
    config = _alembic_config()
    config.attributes["connection"] = connection
    with _ALEMBIC_LOCK:
        command.upgrade(config, "head")


def _in_process_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    if (lock := _LOOP_LOCKS.get(loop)) is None:
        lock = _LOOP_LOCKS[loop] = asyncio.Lock()
    return lock


@asynccontextmanager
async def _migration_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """For SQLite, an exclusive lock file beside the database (PostgreSQL locks in-database)."""
    db_file = _sqlite_file(engine.url) if engine.dialect.name == "sqlite" else None
    if db_file is None or fcntl is None:
        yield
        return
    fd = os.open(f"{db_file}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # Poll instead of blocking a thread: cancellable, and start-up contention is brief.
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class Store:
    """The engine plus every repository; one per process, shared by all requests and activities."""

    def __init__(self, engine: AsyncEngine, secrets: SecretBox) -> None:
        self.engine = engine
        self.sessions = session_factory(engine)
        self.definitions = DefinitionRepository(self.sessions)
        self.logs = LogRepository(self.sessions)
        self.metrics = MetricRepository(self.sessions)
        self.connections = ConnectionStore(self.sessions, secrets)
        self.api_keys = ApiKeyRepository(self.sessions)
        self.webhooks = WebhookRepository(self.sessions)
        self.compilations = CompilationRepository(self.sessions)
        self.presets = PresetRepository(self.sessions)
        self.errors = ErrorRepository(self.sessions)
        self.payloads = PayloadRepository(self.sessions)
        self._telemetry = TelemetryWriter(engine, self.logs, self.metrics)

    @classmethod
    async def open(cls, settings: Settings | None = None, *, migrate_schema: bool = True) -> Store:
        """Migrate the schema to head (unless told not to) and open the store."""
        settings = settings or get_settings()
        if settings.data_dir.is_dir():
            private_dir(settings.data_dir)  # one made by someone else may be wide open
        url = settings.resolved_database_url
        if migrate_schema:
            await migrate(url)
        return cls(create_engine(url), SecretBox.from_settings(settings))

    async def write_telemetry(self, logs: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> None:
        """Step logs and attempt metrics: bulk inserts, however many attempts they cover."""
        await self._telemetry.write(logs, metrics)

    async def close(self) -> None:
        await self._telemetry.close()
        await self.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_value: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Store(url={self.engine.url.render_as_string(hide_password=True)!r})"
