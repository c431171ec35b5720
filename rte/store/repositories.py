"""Async repositories over the store's tables; they return plain pydantic models, never ORM objects."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field
from sqlalchemy import Integer, and_, case, cast, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rte.errors import EngineError, ErrorCategory
from rte.store.tables import Definition, ExecutionLog, StepMetric, utcnow

LogLevel = Literal["debug", "info", "warning", "error"]
LOG_LEVELS: tuple[LogLevel, ...] = ("debug", "info", "warning", "error")  # in increasing severity
DefinitionFormat = Literal["native", "swf"]
MAX_PAGE = 1000

SessionFactory = async_sessionmaker[AsyncSession]
M = TypeVar("M", bound=BaseModel)


class _Row(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class DefinitionRow(_Row):
    id: str
    version: str
    name: str
    description: str
    format: DefinitionFormat
    source: str
    plan: dict[str, Any]
    plan_hash: str
    created_at: datetime


class NewLog(BaseModel):
    """What a caller hands to `LogRepository.add_many` (as a dict)."""

    model_config = ConfigDict(extra="forbid")

    execution_id: str = Field(min_length=1)
    run_id: str = ""
    step_path: str = ""
    item_index: int | None = None
    attempt: int = 1
    level: LogLevel
    source: str = ""
    message: str
    timestamp: datetime = Field(default_factory=utcnow)


class LogRow(_Row):
    id: int
    execution_id: str
    run_id: str
    step_path: str
    item_index: int | None
    attempt: int
    level: LogLevel
    source: str
    message: str
    timestamp: datetime


class NewMetric(BaseModel):
    """What a caller hands to `MetricRepository.add` (as a dict)."""

    model_config = ConfigDict(extra="forbid")

    execution_id: str = Field(min_length=1)
    run_id: str = ""
    definition_id: str = ""
    step_path: str
    kind: str
    item_index: int | None = None
    attempt: int = 1
    status: Literal["completed", "failed"]
    started_at: datetime = Field(default_factory=utcnow)
    duration_ms: float
    bytes_in: int | None = None
    bytes_out: int | None = None
    tokens_prompt: int | None = None
    tokens_completion: int | None = None
    http_status: int | None = None
    error_category: str | None = None
    error_message: str | None = Field(None, max_length=2048)
    error_fingerprint: str | None = None
    error_retryable: bool | None = None
    error_details: dict[str, Any] | None = None
    connection_id: str | None = None
    host: str | None = None


class MetricRow(NewMetric, _Row):
    model_config = ConfigDict(from_attributes=True, frozen=True, extra="ignore")

    id: int


class MetricSummary(BaseModel):
    execution_id: str
    count: int
    failures: int
    total_duration_ms: float
    tokens_prompt: int
    tokens_completion: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tokens_total(self) -> int:
        return self.tokens_prompt + self.tokens_completion


def _validated(model: type[M], data: Mapping[str, Any], what: str) -> M:
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        raise EngineError(ErrorCategory.VALIDATION, f"invalid {what}: {err}") from err


class DefinitionRepository:
    """Every saved version of every definition; a version is immutable once written."""

    _SAVE_ATTEMPTS = 10

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def save(
        self,
        id: str,
        name: str,
        description: str,
        format: DefinitionFormat,
        source: str,
        plan: dict[str, Any],
        plan_hash: str,
    ) -> str:
        """Store a new version when the plan changed; answer the version that holds this plan."""
        if format not in ("native", "swf"):
            raise EngineError(ErrorCategory.VALIDATION, f"unknown format {format!r}; use native or swf")
        if not id or len(id) > 200:
            raise EngineError(ErrorCategory.VALIDATION, "a definition id must have 1 to 200 characters")
        # Two writers may pick the same next number; the primary key rejects one, which retries.
        for _ in range(self._SAVE_ATTEMPTS):
            async with self._sessions() as session:
                latest = await self._latest(session, id)
                if latest is not None and latest.plan_hash == plan_hash:
                    return latest.version
                version = str(int(latest.version) + 1 if latest is not None else 1)
                session.add(
                    Definition(
                        id=id,
                        version=version,
                        name=name,
                        description=description,
                        format=format,
                        source=source,
                        plan=plan,
                        plan_hash=plan_hash,
                    )
                )
                try:
                    await session.commit()
                except IntegrityError:
                    await session.rollback()
                    continue
                return version
        raise EngineError(
            ErrorCategory.INTERNAL, f"could not save definition {id!r}: too many concurrent saves"
        )

    async def get(self, id: str, version: str | None = None) -> DefinitionRow | None:
        async with self._sessions() as session:
            if version is None:
                row = await self._latest(session, id)
            else:
                row = await session.get(Definition, (id, version))
            return DefinitionRow.model_validate(row) if row is not None else None

    async def list_versions(self, id: str) -> list[DefinitionRow]:
        """Oldest first."""
        stmt = select(Definition).where(Definition.id == id).order_by(_version_number())
        async with self._sessions() as session:
            return [DefinitionRow.model_validate(row) for row in await session.scalars(stmt)]

    async def list_latest(self) -> list[DefinitionRow]:
        """The latest version of every definition, by id."""
        latest = (
            select(Definition.id, func.max(_version_number()).label("number"))
            .group_by(Definition.id)
            .subquery()
        )
        stmt = (
            select(Definition)
            .join(latest, and_(Definition.id == latest.c.id, _version_number() == latest.c.number))
            .order_by(Definition.id)
        )
        async with self._sessions() as session:
            return [DefinitionRow.model_validate(row) for row in await session.scalars(stmt)]

    async def delete(self, id: str) -> bool:
        """Delete every version; False when there was none."""
        async with self._sessions() as session:
            result = await session.execute(delete(Definition).where(Definition.id == id))
            await session.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    async def _latest(session: AsyncSession, id: str) -> Definition | None:
        stmt = select(Definition).where(Definition.id == id).order_by(_version_number().desc()).limit(1)
        return (await session.scalars(stmt)).first()


def _version_number() -> Any:
    # Versions are text ("1", "2", … "10"); order them as numbers.
    return cast(Definition.version, Integer)


class LogRepository:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def add_many(self, entries: list[Mapping[str, Any]]) -> int:
        """Insert all entries in one transaction; answers how many were written."""
        rows = [_validated(NewLog, entry, "log entry").model_dump() for entry in entries]
        if not rows:
            return 0
        async with self._sessions() as session:
            await session.execute(insert(ExecutionLog), rows)
            await session.commit()
        return len(rows)

    async def query(
        self,
        execution_id: str,
        *,
        min_level: LogLevel | None = None,
        source: str | None = None,
        text: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        step_path: str | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> list[LogRow]:
        """An execution's logs in write order; page with `after_id` = the last id seen.

        `since` is inclusive and `until` exclusive; `text` is a case-insensitive substring match.
        """
        stmt = select(ExecutionLog).where(ExecutionLog.execution_id == execution_id)
        if min_level is not None:
            if min_level not in LOG_LEVELS:
                raise EngineError(
                    ErrorCategory.VALIDATION,
                    f"unknown log level {min_level!r}; use one of {', '.join(LOG_LEVELS)}",
                )
            stmt = stmt.where(ExecutionLog.level.in_(LOG_LEVELS[LOG_LEVELS.index(min_level) :]))
        if source is not None:
            stmt = stmt.where(ExecutionLog.source == source)
        if text:
            stmt = stmt.where(func.lower(ExecutionLog.message).contains(text.lower(), autoescape=True))
        if since is not None:
            stmt = stmt.where(ExecutionLog.timestamp >= since)
        if until is not None:
            stmt = stmt.where(ExecutionLog.timestamp < until)
        if step_path is not None:
            stmt = stmt.where(ExecutionLog.step_path == step_path)
        if after_id is not None:
            stmt = stmt.where(ExecutionLog.id > after_id)
        stmt = stmt.order_by(ExecutionLog.id).limit(max(1, min(limit, MAX_PAGE)))
        async with self._sessions() as session:
            return [LogRow.model_validate(row) for row in await session.scalars(stmt)]

    async def step_paths(self, execution_id: str) -> list[str]:
        """The distinct step paths an execution's logs were written for, sorted."""
        stmt = (
            select(ExecutionLog.step_path)
            .where(ExecutionLog.execution_id == execution_id)
            .distinct()
            .order_by(ExecutionLog.step_path)
        )
        async with self._sessions() as session:
            return [path for path in await session.scalars(stmt) if path]


class MetricRepository:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def add(self, metric: Mapping[str, Any]) -> int:
        """Record one step attempt; answers the new row's id."""
        row = StepMetric(**_validated(NewMetric, metric, "step metric").model_dump())
        async with self._sessions() as session:
            session.add(row)
            await session.commit()
            return row.id

    async def add_many(self, metrics: list[Mapping[str, Any]]) -> int:
        """Record several attempts in one transaction."""
        rows = [_validated(NewMetric, metric, "step metric").model_dump() for metric in metrics]
        if rows:
            async with self._sessions() as session:
                await session.execute(insert(StepMetric), rows)
                await session.commit()
        return len(rows)

    async def for_execution(self, execution_id: str) -> list[MetricRow]:
        stmt = select(StepMetric).where(StepMetric.execution_id == execution_id).order_by(StepMetric.id)
        async with self._sessions() as session:
            return [MetricRow.model_validate(row) for row in await session.scalars(stmt)]

    async def since(self, execution_id: str, after_id: int = 0, limit: int = 1000) -> list[MetricRow]:
        """The execution's attempts recorded after row `after_id`, oldest first (a live feed)."""
        stmt = (
            select(StepMetric)
            .where(StepMetric.execution_id == execution_id, StepMetric.id > after_id)
            .order_by(StepMetric.id)
            .limit(limit)
        )
        async with self._sessions() as session:
            return [MetricRow.model_validate(row) for row in await session.scalars(stmt)]

    async def summary(self, execution_id: str) -> MetricSummary:
        stmt = select(
            func.count(StepMetric.id),
            func.coalesce(func.sum(case((StepMetric.status == "failed", 1), else_=0)), 0),
            func.coalesce(func.sum(StepMetric.duration_ms), 0.0),
            func.coalesce(func.sum(StepMetric.tokens_prompt), 0),
            func.coalesce(func.sum(StepMetric.tokens_completion), 0),
        ).where(StepMetric.execution_id == execution_id)
        async with self._sessions() as session:
            count, failures, duration, prompt, completion = (await session.execute(stmt)).one()
        return MetricSummary(
            execution_id=execution_id,
            count=count,
            failures=failures,
            total_duration_ms=float(duration),
            tokens_prompt=prompt,
            tokens_completion=completion,
        )
