"""Run presets: saved parameters, execution configuration and connections for a definition."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import OperatorKey, StoreDep, ViewerKey
from api.errors import Problem
from api.models import DEFINITION_ID, PresetIn, PresetOut, PresetUpdate, RunConfig, problems
from rte.store.presets import PresetRow

router = APIRouter(prefix="/presets", tags=["runs"], responses=problems(401, 403, 404, 413, 422, 409))

PresetId = Annotated[str, Path(max_length=40, examples=["0b9c3f1e2d4a4f6b8c7d5e3a1b2c4d6e"])]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PresetOut)
async def create_preset(body: PresetIn, store: StoreDep, _: OperatorKey) -> PresetOut:
    """Save a preset for a definition (names are unique per definition)."""
    if await store.definitions.get(body.definition_id) is None:
        raise Problem(404, "Not found", f"no definition with id '{body.definition_id}'")
    row = await store.presets.create(
        body.definition_id,
        body.name,
        description=body.description,
        params=body.params,
        config=body.config.model_dump(exclude_defaults=True),
        connections=body.connections,
    )
    return _out(row)


@router.get("", response_model=list[PresetOut])
async def list_presets(
    store: StoreDep,
    _: ViewerKey,
    definition_id: Annotated[str | None, Query(pattern=DEFINITION_ID, max_length=200)] = None,
) -> list[PresetOut]:
    """Presets, of one definition or of all."""
    return [_out(row) for row in await store.presets.list(definition_id)]


@router.get("/{preset_id}", response_model=PresetOut)
async def get_preset(preset_id: PresetId, store: StoreDep, _: ViewerKey) -> PresetOut:
    """One preset."""
    row = await store.presets.get(preset_id)
    if row is None:
        raise _unknown(preset_id)
    return _out(row)


@router.patch("/{preset_id}", response_model=PresetOut)
async def update_preset(
    preset_id: PresetId, body: PresetUpdate, store: StoreDep, _: OperatorKey
) -> PresetOut:
    """Change some fields of a preset."""
    changes = body.model_dump(exclude_unset=True)
    if "config" in changes:
        changes["config"] = RunConfig.model_validate(changes["config"] or {}).model_dump(
            exclude_defaults=True
        )
    changes = {name: value for name, value in changes.items() if value is not None}
    row = await store.presets.update(preset_id, **changes)
    if row is None:
        raise _unknown(preset_id)
    return _out(row)


@router.delete("/{preset_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_preset(preset_id: PresetId, store: StoreDep, _: OperatorKey) -> Response:
    """Delete a preset."""
    if not await store.presets.delete(preset_id):
        raise _unknown(preset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _unknown(preset_id: str) -> Problem:
    return Problem(404, "Not found", f"no preset with id '{preset_id}'")


def _out(row: PresetRow) -> PresetOut:
    return PresetOut(
        id=row.id,
        definition_id=row.definition_id,
        name=row.name,
        description=row.description,
        params=row.params,
        config=RunConfig.model_validate(row.config),
        connections=row.connections,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
