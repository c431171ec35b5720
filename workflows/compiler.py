"""The compiler: definition text → diagnostics, a Plan and artifacts.

Stages run in order — parse, schema, references, expressions, graph, plan, preview — and each is
timed. A stage fails when it reports an error. The analysis stages (references, expressions, graph)
keep running after an earlier failure whenever they have something to look at, so one compile lists
as many independent problems as possible; plan and preview only run on a definition without errors.
A stage that could not run is `skipped`.

This module is the pipeline: parsing (workflows/source.py), choosing the front end, timing the
stages and assembling the result. The native format's checks and lowering live in
workflows/native.py; Serverless Workflow documents go to `workflows.swf.compile_swf`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from workflows.artifacts import Artifacts, build_artifacts
from workflows.diagnostics import Diagnostic, has_errors, make_diagnostic, sorted_by_position
from workflows.expressions import expression_problems
from workflows.native import DEFAULT_VERSION, NativeCompiler
from workflows.plan import Plan
from workflows.source import MAX_SOURCE_CHARS, Source, parse_source
from workflows.swf import WorkflowCatalog, compile_swf

__all__ = [
    "DEFAULT_VERSION",
    "STAGES",
    "Compilation",
    "Stage",
    "StageName",
    "compile_file",
    "compile_source",
    "expression_problems",  # its home is workflows.expressions; kept importable from here
    "front_end",
]

StageName = Literal["parse", "schema", "references", "expressions", "graph", "plan", "preview"]
STAGES: tuple[StageName, ...] = ("parse", "schema", "references", "expressions", "graph", "plan", "preview")


class Stage(BaseModel):
    name: StageName
    status: Literal["ok", "failed", "skipped"]
    duration_ms: float


class Compilation(BaseModel):
    ok: bool
    filename: str = "<input>"
    source_format: Literal["native", "swf"] = "native"
    stages: list[Stage]
    diagnostics: list[Diagnostic]
    plan: Plan | None = None
    artifacts: Artifacts | None = None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def compile_file(path: str | Path, *, catalog: WorkflowCatalog | None = None) -> Compilation:
    """Compile a definition file. A missing or unreadable file raises OSError (the caller says so)."""
    path = Path(path)
    if path.stat().st_size > MAX_SOURCE_CHARS:
        text_too_large = make_diagnostic(
            "E003",
            f"the file is {path.stat().st_size:,} bytes, over the {MAX_SOURCE_CHARS:,}-byte limit",
            hint="split it into smaller workflows",
        )
        return _Run(str(path)).finish("native", None, None, extra=[text_too_large])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        not_text = make_diagnostic(
            "E001", f"the file is not UTF-8 text (byte {error.start:,} cannot be decoded)"
        )
        return _Run(str(path)).finish("native", None, None, extra=[not_text])
    return compile_source(text, str(path), catalog=catalog)


def compile_source(
    text: str, filename: str = "<input>", *, catalog: WorkflowCatalog | None = None
) -> Compilation:
    """Compile a definition. `catalog` holds the workflows a Serverless Workflow `run: workflow`
    may name (the API and the CLI fill it from the definitions store)."""
    run = _Run(filename)
    with run.stage("parse"):
        source, problems = parse_source(text, strict_json=filename.lower().endswith(".json"))
        run.diagnostics.extend(problems)
    if source is None:
        return run.finish("native", None, None)
    source_format = front_end(source.data)
    if source_format == "swf":
        plan = _compile_serverless_workflow(source, run, catalog)
    else:
        plan = _compile_native(source, run)
    artifacts = None
    if plan is not None and not has_errors(run.diagnostics):
        with run.stage("preview"):
            artifacts = build_artifacts(plan)
    return run.finish(source_format, plan, artifacts)


def front_end(data: dict[str, Any]) -> Literal["native", "swf"]:
    """Serverless Workflow documents start with a `document:` mapping; everything else is native."""
    return "swf" if isinstance(data.get("document"), dict) else "native"


def _compile_native(source: Source, run: _Run) -> Plan | None:
    native = NativeCompiler(source, run.diagnostics)
    with run.stage("schema"):
        native.check_schema()
    if native.definition is None:
        return None
    with run.stage("references"):
        native.check_references()
    with run.stage("expressions"):
        native.check_expressions()
    with run.stage("graph"):
        native.check_graph()
    if has_errors(run.diagnostics):
        return None
    with run.stage("plan"):
        return native.lower()


def _compile_serverless_workflow(source: Source, run: _Run, catalog: WorkflowCatalog | None) -> Plan | None:
    """Hand the document to the Serverless Workflow front end (`workflows/swf/`).

    That front end validates, resolves and lowers in one call: its time is reported on `schema`
    and the later analysis stages are marked like it (ok, or skipped after its errors).
    """
    with run.stage("schema"):
        plan: Plan | None = compile_swf(source.data, source.positions, run.diagnostics, catalog=catalog)
    if plan is None or has_errors(run.diagnostics):
        return None
    for name in ("references", "expressions", "graph", "plan"):
        run.stages.append(Stage(name=name, status="ok", duration_ms=0.0))
    return plan


class _Run:
    """Stage timings and the diagnostics collected so far."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.stages: list[Stage] = []
        self.diagnostics: list[Diagnostic] = []

    @contextmanager
    def stage(self, name: StageName) -> Iterator[None]:
        errors_before = sum(d.is_error for d in self.diagnostics)
        started = time.perf_counter()
        yield
        failed = sum(d.is_error for d in self.diagnostics) > errors_before
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        self.stages.append(Stage(name=name, status="failed" if failed else "ok", duration_ms=elapsed))

    def finish(
        self,
        source_format: Literal["native", "swf"],
        plan: Plan | None,
        artifacts: Artifacts | None,
        extra: list[Diagnostic] | None = None,
    ) -> Compilation:
        self.diagnostics.extend(extra or [])
        ran = {stage.name: stage for stage in self.stages}
        if extra and "parse" not in ran:
            ran["parse"] = Stage(name="parse", status="failed", duration_ms=0.0)
        stages = [ran.get(name) or Stage(name=name, status="skipped", duration_ms=0.0) for name in STAGES]
        ok = plan is not None and artifacts is not None and not has_errors(self.diagnostics)
        return Compilation(
            ok=ok,
            filename=self.filename,
            source_format=source_format,
            stages=stages,
            diagnostics=sorted_by_position(self.diagnostics),
            plan=plan if ok else None,
            artifacts=artifacts if ok else None,
        )
