"""The SQL store: definitions, execution logs, step metrics and encrypted connections.

Open it once per process with `store = await Store.open(settings)` (which migrates the schema to
head) and close it with `await store.close()`.
"""

from rte.store.connections import (
    CONNECTION_TYPES,
    ConnectionInfo,
    ConnectionStore,
    ConnectionType,
    SecretBox,
    validate_connection,
)
from rte.store.db import MIGRATIONS_DIR, SessionFactory, Store, create_engine, migrate, session_factory
from rte.store.repositories import (
    LOG_LEVELS,
    DefinitionFormat,
    DefinitionRepository,
    DefinitionRow,
    LogLevel,
    LogRepository,
    LogRow,
    MetricRepository,
    MetricRow,
    MetricSummary,
    NewLog,
    NewMetric,
)

__all__ = [
    "CONNECTION_TYPES",
    "LOG_LEVELS",
    "MIGRATIONS_DIR",
    "ConnectionInfo",
    "ConnectionStore",
    "ConnectionType",
    "DefinitionFormat",
    "DefinitionRepository",
    "DefinitionRow",
    "LogLevel",
    "LogRepository",
    "LogRow",
    "MetricRepository",
    "MetricRow",
    "MetricSummary",
    "NewLog",
    "NewMetric",
    "SecretBox",
    "SessionFactory",
    "Store",
    "create_engine",
    "migrate",
    "session_factory",
    "validate_connection",
]
