"""Compilation records: what one compile of a definition's source found, kept so a UI can show it again."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rte.store.repositories import SessionFactory
from rte.store.tables import CompilationRecord


class NewCompilation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(max_length=500)
    definition_id: str | None = Field(None, max_length=200)
    source_format: Literal["native", "swf"]
    ok: bool
    source: str
    stages: list[dict[str, Any]]
    diagnostics: list[dict[str, Any]]
    plan: dict[str, Any] | None = None
    artifacts: dict[str, Any] | None = None


class CompilationRow(NewCompilation):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: str
    created_at: datetime


class CompilationRepository:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def add(self, record: NewCompilation) -> CompilationRow:
        row = CompilationRecord(id=uuid.uuid4().hex, **record.model_dump())
        async with self._sessions() as session:
            session.add(row)
            await session.commit()
            return CompilationRow.model_validate(row)

    async def get(self, id: str) -> CompilationRow | None:
        async with self._sessions() as session:
            row = await session.get(CompilationRecord, id)
            return CompilationRow.model_validate(row) if row is not None else None
