"""The SQL store's tables, portable across SQLite and PostgreSQL.

The schema itself is owned by the Alembic migrations in `migrations/versions/`; these models are what
the repositories query and what `alembic revision --autogenerate` compares against.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names, so later migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an `INTEGER PRIMARY KEY`; PostgreSQL gets a 64-bit identity.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Always hands back timezone-aware UTC datetimes.

    PostgreSQL keeps the zone (timestamptz); SQLite has no zone type and returns naive values, so we
    store UTC there and re-attach the zone on the way out. Naive inputs are taken to be UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite compares timestamps as text: store them all in one (naive UTC) format.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}


class Definition(Base):
    """One version of a workflow definition; every version is kept."""

    __tablename__ = "definitions"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    # "1", "2", … assigned by the store; compare numerically, never as text.
    version: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    format: Mapped[str] = mapped_column(String(20))  # native | swf
    source: Mapped[str] = mapped_column(Text)
    plan: Mapped[dict[str, Any]]
    plan_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExecutionLog(Base):
    __tablename__ = "execution_logs"
    __table_args__ = (
        # Reading an execution's logs in order (and resuming after an id) is the hot path.
        Index("ix_execution_logs_execution_id_id", "execution_id", "id"),
        Index("ix_execution_logs_execution_id_timestamp", "execution_id", "timestamp"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(String(255))
    run_id: Mapped[str] = mapped_column(String(255), default="")
    step_path: Mapped[str] = mapped_column(String(500), default="")
    item_index: Mapped[int | None]
    attempt: Mapped[int] = mapped_column(default=1)
    level: Mapped[str] = mapped_column(String(10))  # debug | info | warning | error
    source: Mapped[str] = mapped_column(String(100), default="")
    message: Mapped[str] = mapped_column(Text)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)


class StepMetric(Base):
    __tablename__ = "step_metrics"
    # Failure windows (error analysis) scan by status and time.
    __table_args__ = (Index("ix_step_metrics_status_started_at", "status", "started_at"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(String(255), index=True)
    run_id: Mapped[str] = mapped_column(String(255), default="")
    definition_id: Mapped[str] = mapped_column(String(200), default="")
    step_path: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(50))
    item_index: Mapped[int | None]
    attempt: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(20))  # completed | failed
    started_at: Mapped[datetime]
    duration_ms: Mapped[float] = mapped_column(Float)
    bytes_in: Mapped[int | None] = mapped_column(BigInteger)
    bytes_out: Mapped[int | None] = mapped_column(BigInteger)
    tokens_prompt: Mapped[int | None]
    tokens_completion: Mapped[int | None]
    http_status: Mapped[int | None]
    error_category: Mapped[str | None] = mapped_column(String(50))
    # Error analysis (migration 0005): what failed, redacted and bounded, and where it was sent.
    error_message: Mapped[str | None] = mapped_column(Text)
    error_fingerprint: Mapped[str | None] = mapped_column(String(32), index=True)
    error_retryable: Mapped[bool | None]
    error_details: Mapped[dict[str, Any] | None]
    connection_id: Mapped[str | None] = mapped_column(String(100))
    host: Mapped[str | None] = mapped_column(String(255))


class Connection(Base):
    """Credentials for an external service; the secret part is Fernet-encrypted."""

    __tablename__ = "connections"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    type: Mapped[str] = mapped_column(String(20))  # bearer | api_key | basic | openai
    config: Mapped[dict[str, Any]]
    # Names (never values) of the secret fields, so listing connections needs no decryption.
    secret_fields: Mapped[list[str]] = mapped_column(JSON)
    secret_encrypted: Mapped[str] = mapped_column(Text)  # a Fernet token (URL-safe base64)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"Connection(id={self.id!r}, type={self.type!r})"


class ApiKey(Base):
    """An API key: only a hash of its secret part is kept."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the public part of the key
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))  # viewer | operator | admin
    secret_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class CompilationRecord(Base):
    """One compile of a definition's source: stages, diagnostics and (when it compiled) the artifacts."""

    __tablename__ = "compilations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    filename: Mapped[str] = mapped_column(String(500))
    definition_id: Mapped[str | None] = mapped_column(String(200), index=True)
    source_format: Mapped[str] = mapped_column(String(20))  # native | swf
    ok: Mapped[bool]
    source: Mapped[str] = mapped_column(Text)
    stages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    diagnostics: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any] | None]
    artifacts: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Preset(Base):
    """A saved way to run a definition: parameters, execution configuration and connections."""

    __tablename__ = "presets"
    __table_args__ = (UniqueConstraint("definition_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    definition_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]]
    config: Mapped[dict[str, Any]]
    connections: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Webhook(Base):
    """A URL that starts runs of one definition; only a hash of its token is kept."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the public part of the token
    definition_id: Mapped[str] = mapped_column(String(200), index=True)
    # The version every run uses; None runs the latest version at the time of each call.
    definition_version: Mapped[str | None] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class Payload(Base):
    """A large value carried through Temporal history as a reference (rte/claim_check.py).

    Keyed by the SHA-256 of its canonical JSON, so a value stored twice is one row. Nothing deletes
    rows yet: a retention job must first know which executions still reference them.
    """

    __tablename__ = "payloads"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
