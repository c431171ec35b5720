"""Failed step attempts for error analysis: windows, filters and the history of later successes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select, tuple_

from rte.store.repositories import SessionFactory
from rte.store.tables import StepMetric

MAX_FAILURES = 10_000


class FailedAttempt(BaseModel):
    """One failed attempt of a step, as the worker recorded it."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    execution_id: str
    run_id: str
    definition_id: str
    step_path: str
    kind: str
    item_index: int | None
    attempt: int
    started_at: datetime
    duration_ms: float
    http_status: int | None
    error_category: str | None
    error_message: str | None
    error_fingerprint: str | None
    error_retryable: bool | None
    error_details: dict[str, Any] | None
    connection_id: str | None
    host: str | None


class ErrorRepository:
    """Queries over `step_metrics` rows whose status is failed."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def failures(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        definition_id: str | None = None,
        category: str | None = None,
        step_path: str | None = None,
        execution_id: str | None = None,
        fingerprint: str | None = None,
        limit: int = 1000,
    ) -> list[FailedAttempt]:
        """Failed attempts matching every filter given, newest first."""
        stmt = select(StepMetric).where(StepMetric.status == "failed")
        if since is not None:
            stmt = stmt.where(StepMetric.started_at >= since)
        if until is not None:
            stmt = stmt.where(StepMetric.started_at < until)
        if definition_id is not None:
            stmt = stmt.where(StepMetric.definition_id == definition_id)
        if category is not None:
            stmt = stmt.where(StepMetric.error_category == category)
        if step_path is not None:
            stmt = stmt.where(StepMetric.step_path == step_path)
        if execution_id is not None:
            stmt = stmt.where(StepMetric.execution_id == execution_id)
        if fingerprint is not None:
            stmt = stmt.where(StepMetric.error_fingerprint == fingerprint)
        stmt = stmt.order_by(StepMetric.started_at.desc(), StepMetric.id.desc())
        stmt = stmt.limit(max(1, min(limit, MAX_FAILURES)))
        async with self._sessions() as session:
            return [FailedAttempt.model_validate(row) for row in await session.scalars(stmt)]

    async def successes(self, steps: Iterable[tuple[str, str]], executions: Iterable[str]) -> SuccessHistory:
        """When the given workflow steps, and the given executions' steps, last completed.

        Two kinds of evidence that a failure was recovered: a later attempt of the same execution's
        step completed (a retry), or the same workflow step later completed at its first attempt
        (another execution for which it simply worked).
        """
        history = SuccessHistory()
        wanted_steps, wanted_runs = sorted(set(steps)), sorted(set(executions))
        # Bounded IN lists: SQLite allows at most 32,766 parameters per statement.
        for start in range(0, len(wanted_steps), 400):
            stmt = (
                select(StepMetric.definition_id, StepMetric.step_path, func.max(StepMetric.started_at))
                .where(
                    StepMetric.status == "completed",
                    StepMetric.attempt == 1,
                    tuple_(StepMetric.definition_id, StepMetric.step_path).in_(
                        wanted_steps[start : start + 400]
                    ),
                )
                .group_by(StepMetric.definition_id, StepMetric.step_path)
            )
            async with self._sessions() as session:
                for definition_id, step_path, latest in await session.execute(stmt):
                    history.first_attempt[(definition_id, step_path)] = _aware(latest)
        for start in range(0, len(wanted_runs), 400):
            stmt = (
                select(
                    StepMetric.execution_id,
                    StepMetric.step_path,
                    StepMetric.item_index,
                    func.max(StepMetric.started_at),
                )
                .where(
                    StepMetric.status == "completed",
                    StepMetric.execution_id.in_(wanted_runs[start : start + 400]),
                )
                .group_by(StepMetric.execution_id, StepMetric.step_path, StepMetric.item_index)
            )
            async with self._sessions() as session:
                for execution_id, step_path, item_index, latest in await session.execute(stmt):
                    history.same_execution[(execution_id, step_path, item_index)] = _aware(latest)
        return history


@dataclass
class SuccessHistory:
    # (definition id, step path) → the latest first-attempt success of that step, in any execution
    first_attempt: dict[tuple[str, str], datetime] = field(default_factory=dict)
    # (execution id, step path, item index) → the latest success of that step in that execution
    same_execution: dict[tuple[str, str, int | None], datetime] = field(default_factory=dict)


def _aware(value: datetime | str) -> datetime:
    """`max()` over a UTC column loses the column type on SQLite (naive text); put the zone back."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
