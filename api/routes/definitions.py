"""Definitions: save (a new version whenever the plan changes, old versions kept), list, read, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from api.deps import AdminKey, StoreDep, ViewerKey
from api.errors import Problem
from api.models import (
    DEFINITION_ID,
    VERSION,
    DefinitionDetail,
    DefinitionSaved,
    DefinitionSummary,
    SourceIn,
    problems,
)
from api.routes.compilations import diagnostic_out, record
from rte.store import DefinitionRow, Store
from rte.store.catalog import load_swf_catalog
from workflows.compiler import compile_source

router = APIRouter(
    prefix="/definitions", tags=["definitions"], responses=problems(401, 403, 404, 413, 422, 409)
)

DefinitionId = Annotated[str, Path(pattern=DEFINITION_ID, max_length=200, examples=["greet"])]
VersionQuery = Annotated[
    str | None, Query(pattern=VERSION, max_length=20, description="Default: the latest version.")
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DefinitionSaved,
    responses={200: {"model": DefinitionSaved, "description": "The plan did not change: no new version."}},
)
async def create_definition(
    body: SourceIn, response: Response, store: StoreDep, _: AdminKey
) -> DefinitionSaved:
    """Compile and save a definition; a changed plan becomes a new version (422 with diagnostics if it does not compile)."""
    return await _save(store, body, response, expected_id=None)


@router.put(
    "/{definition_id}",
    status_code=status.HTTP_201_CREATED,
    response_model=DefinitionSaved,
    responses={200: {"model": DefinitionSaved, "description": "The plan did not change: no new version."}},
)
async def update_definition(
    definition_id: DefinitionId, body: SourceIn, response: Response, store: StoreDep, _: AdminKey
) -> DefinitionSaved:
    """Save a new version of this definition (the source's `id` must match the path)."""
    return await _save(store, body, response, expected_id=definition_id)


@router.get("", response_model=list[DefinitionSummary])
async def list_definitions(store: StoreDep, _: ViewerKey) -> list[DefinitionSummary]:
    """The latest version of every definition."""
    return [_summary(row) for row in await store.definitions.list_latest()]


@router.get("/{definition_id}", response_model=DefinitionDetail)
async def get_definition(
    definition_id: DefinitionId, store: StoreDep, _: ViewerKey, version: VersionQuery = None
) -> DefinitionDetail:
    """One version of a definition (the latest by default): its source and its plan."""
    row = await load_definition(store, definition_id, version)
    return DefinitionDetail(**_summary(row).model_dump(), source=row.source, plan=row.plan)


@router.get("/{definition_id}/versions", response_model=list[DefinitionSummary])
async def list_versions(
    definition_id: DefinitionId, store: StoreDep, _: ViewerKey
) -> list[DefinitionSummary]:
    """Every saved version of a definition, oldest first."""
    rows = await store.definitions.list_versions(definition_id)
    if not rows:
        raise _unknown(definition_id)
    return [_summary(row) for row in rows]


@router.delete("/{definition_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_definition(definition_id: DefinitionId, store: StoreDep, _: AdminKey) -> Response:
    """Delete every version (running executions are not affected: they carry their plan)."""
    if not await store.definitions.delete(definition_id):
        raise _unknown(definition_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def load_definition(store: Store, definition_id: str, version: str | None = None) -> DefinitionRow:
    row = await store.definitions.get(definition_id, version)
    if row is None:
        if version is not None and await store.definitions.get(definition_id) is not None:
            raise Problem(404, "Not found", f"definition '{definition_id}' has no version '{version}'")
        raise _unknown(definition_id)
    return row


def _unknown(definition_id: str) -> Problem:
    return Problem(
        404, "Not found", f"no definition with id '{definition_id}'; list them with GET /definitions"
    )


async def _save(store: Store, body: SourceIn, response: Response, expected_id: str | None) -> DefinitionSaved:
    compilation = compile_source(
        body.source, body.filename, catalog=await load_swf_catalog(store.definitions)
    )
    recorded = await record(store, compilation, body.source)
    if not compilation.ok or compilation.plan is None:
        errors = [diagnostic_out(item) for item in compilation.errors]
        first = errors[0] if errors else None
        where = f" at {first.location}" if first and first.location else ""
        raise Problem(
            422,
            "Definition does not compile",
            f"{len(errors)} error(s); the first{where}: {first.message if first else 'unknown'}",
            compilation_id=recorded.id,
            diagnostics=[item.model_dump() for item in errors],
        )
    plan = compilation.plan
    if expected_id is not None and plan.definition_id != expected_id:
        raise Problem(
            409,
            "Definition id mismatch",
            f"the source's id is '{plan.definition_id}', but this is PUT /definitions/{expected_id}; "
            "change the id in the source or use its own URL",
        )
    previous = await store.definitions.get(plan.definition_id)
    version = await store.definitions.save(
        plan.definition_id,
        plan.name,
        plan.description or "",
        plan.source_format,
        body.source,
        plan.model_dump(mode="json", by_alias=True),
        plan.hash,
    )
    changed = previous is None or previous.version != version
    row = await store.definitions.get(plan.definition_id, version)
    assert row is not None
    response.status_code = status.HTTP_201_CREATED if changed else status.HTTP_200_OK
    warnings = [diagnostic_out(item) for item in compilation.diagnostics if not item.is_error]
    return DefinitionSaved(
        definition=_summary(row), changed=changed, compilation_id=recorded.id, warnings=warnings
    )


def _summary(row: DefinitionRow) -> DefinitionSummary:
    return DefinitionSummary(
        id=row.id,
        version=row.version,
        name=row.name,
        description=row.description,
        format=row.format,
        plan_hash=row.plan_hash,
        created_at=row.created_at,
    )
