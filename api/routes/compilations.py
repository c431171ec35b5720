"""Compilations: compile a definition's source and keep the record (stages, diagnostics, artifacts)."""

from __future__ import annotations

from fastapi import APIRouter, Path, status

from api.deps import AdminKey, StoreDep, ViewerKey
from api.errors import Problem
from api.models import (
    CompilationArtifacts,
    CompilationOut,
    DiagnosticOut,
    PlanStats,
    SourceIn,
    StageOut,
    problems,
)
from rte.store import Store
from rte.store.catalog import load_swf_catalog
from rte.store.compilations import CompilationRow, NewCompilation
from workflows.compiler import Compilation, compile_source
from workflows.diagnostics import Diagnostic

router = APIRouter(prefix="/compilations", tags=["definitions"], responses=problems(401, 403, 404, 413, 422))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CompilationOut)
async def compile_definition(body: SourceIn, store: StoreDep, _: AdminKey) -> CompilationOut:
    """Compile source without saving a definition; the record answers whether and why it compiles."""
    compilation = compile_source(
        body.source, body.filename, catalog=await load_swf_catalog(store.definitions)
    )
    return compilation_out(await record(store, compilation, body.source))


@router.get("/{compilation_id}", response_model=CompilationOut)
async def get_compilation(
    store: StoreDep, _: ViewerKey, compilation_id: str = Path(max_length=40)
) -> CompilationOut:
    """A compilation record by id."""
    row = await store.compilations.get(compilation_id)
    if row is None:
        raise Problem(404, "Not found", f"no compilation with id '{compilation_id}'")
    return compilation_out(row)


async def record(store: Store, compilation: Compilation, source: str) -> CompilationRow:
    plan = compilation.plan.model_dump(mode="json", by_alias=True) if compilation.plan else None
    artifacts = None
    if compilation.artifacts is not None and plan is not None:
        found = compilation.artifacts
        artifacts = CompilationArtifacts(
            plan=plan,
            input_schema=found.input_schema,
            mermaid=found.mermaid,
            code_preview=found.preview,
            stats=PlanStats.model_validate(found.stats.model_dump()),
        ).model_dump(mode="json")
    return await store.compilations.add(
        NewCompilation(
            filename=compilation.filename[:500],
            definition_id=compilation.plan.definition_id if compilation.plan else None,
            source_format=compilation.source_format,
            ok=compilation.ok,
            source=source,
            stages=[stage.model_dump(mode="json") for stage in compilation.stages],
            diagnostics=[diagnostic.model_dump(mode="json") for diagnostic in compilation.diagnostics],
            plan=plan,
            artifacts=artifacts,
        )
    )


def diagnostic_out(diagnostic: Diagnostic | dict) -> DiagnosticOut:  # type: ignore[type-arg]
    data = diagnostic.model_dump() if isinstance(diagnostic, Diagnostic) else dict(diagnostic)
    line, column = data.get("line"), data.get("column")
    location = f"{line}:{column or 1}" if line else None
    return DiagnosticOut.model_validate(data | {"location": location})


def compilation_out(row: CompilationRow) -> CompilationOut:
    return CompilationOut(
        id=row.id,
        ok=row.ok,
        filename=row.filename,
        source_format=row.source_format,
        definition_id=row.definition_id,
        created_at=row.created_at,
        stages=[StageOut.model_validate(stage) for stage in row.stages],
        diagnostics=[diagnostic_out(item) for item in row.diagnostics],
        artifacts=CompilationArtifacts.model_validate(row.artifacts) if row.artifacts else None,
    )
