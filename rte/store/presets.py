"""Run presets: a named set of parameters, execution configuration and connections for a definition.

The store keeps them as plain JSON; the API validates them (against the definition's input schema and
`ExecutionConfig`) when a run uses one, since the definition may have changed since it was saved.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from rte.errors import EngineError, ErrorCategory
from rte.store.repositories import SessionFactory
from rte.store.tables import Preset, utcnow

_FIELDS = ("name", "description", "params", "config", "connections")


class PresetRow(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: str
    definition_id: str
    name: str
    description: str
    params: dict[str, Any]
    config: dict[str, Any]
    connections: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def _duplicate(definition_id: str, name: str) -> EngineError:
    return EngineError(
        ErrorCategory.CONFIGURATION,
        f"definition '{definition_id}' already has a preset named '{name}'; choose another name "
        "or update that preset",
    )


class PresetRepository:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    async def create(
        self,
        definition_id: str,
        name: str,
        *,
        description: str = "",
        params: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        connections: dict[str, Any] | None = None,
    ) -> PresetRow:
        row = Preset(
            id=uuid.uuid4().hex,
            definition_id=definition_id,
            name=name,
            description=description,
            params=params or {},
            config=config or {},
            connections=connections or {},
        )
        async with self._sessions() as session:
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                raise _duplicate(definition_id, name) from None
            return PresetRow.model_validate(row)

    async def get(self, id: str) -> PresetRow | None:
        async with self._sessions() as session:
            row = await session.get(Preset, id)
            return PresetRow.model_validate(row) if row is not None else None

    async def list(self, definition_id: str | None = None) -> list[PresetRow]:
        stmt = select(Preset).order_by(Preset.definition_id, Preset.name)
        if definition_id is not None:
            stmt = stmt.where(Preset.definition_id == definition_id)
        async with self._sessions() as session:
            return [PresetRow.model_validate(row) for row in await session.scalars(stmt)]

    async def update(self, id: str, **changes: Any) -> PresetRow | None:
        """Change the given fields (name, description, params, config, connections); None if unknown."""
        unknown = set(changes) - set(_FIELDS)
        if unknown:
            raise EngineError(
                ErrorCategory.VALIDATION, f"presets have no field(s) {', '.join(sorted(unknown))}"
            )
        async with self._sessions() as session:
            row = await session.get(Preset, id)
            if row is None:
                return None
            # Read before the commit: after a failed one the row cannot be loaded again.
            definition_id = row.definition_id
            for name, value in changes.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            try:
                await session.commit()
            except IntegrityError:
                raise _duplicate(definition_id, str(changes.get("name"))) from None
            return PresetRow.model_validate(row)

    async def delete(self, id: str) -> bool:
        async with self._sessions() as session:
            result = await session.execute(delete(Preset).where(Preset.id == id))
            await session.commit()
            return bool(result.rowcount)  # type: ignore[attr-defined]
