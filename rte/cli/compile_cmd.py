"""`rte compile` and `rte schema`: check a definition like a compiler would, print the format's schema."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from workflows.compiler import Compilation, compile_file
from workflows.definition import definition_json_schema
from workflows.diagnostics import format_diagnostic


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def register(app: typer.Typer) -> None:
    app.command("compile")(compile_definition)
    app.command("schema")(schema)


def compile_definition(
    file: Annotated[Path, typer.Argument(help="Definition file (YAML or JSON).")],
    output_format: Annotated[
        OutputFormat,
        typer.Option("--format", "-f", help="text: diagnostics and a summary; json: everything."),
    ] = OutputFormat.TEXT,
) -> None:
    """Compile a definition: print diagnostics with line:column, the plan's shape and hash.

    Exits 1 when there is an error, 2 when the file cannot be read.
    """
    try:
        compilation = compile_file(file)
    except OSError as error:
        reason = error.strerror or str(error)
        print(f"rte compile: cannot read '{file}': {reason}", file=sys.stderr)
        raise typer.Exit(2) from None
    if output_format == OutputFormat.JSON:
        sys.stdout.write(compilation.model_dump_json(by_alias=True, indent=2) + "\n")
    else:
        for diagnostic in compilation.diagnostics:
            print(format_diagnostic(diagnostic, str(file)), file=sys.stderr)
        _print_summary(compilation, Console(highlight=False, soft_wrap=True))
    raise typer.Exit(0 if compilation.ok else 1)


def _print_summary(compilation: Compilation, console: Console) -> None:
    errors = sum(d.severity == "error" for d in compilation.diagnostics)
    warnings = sum(d.severity == "warning" for d in compilation.diagnostics)
    stages = Table.grid(padding=(0, 2))
    for stage in compilation.stages:
        style = {"ok": "green", "failed": "bold red", "skipped": "dim"}[stage.status]
        timing = f"{stage.duration_ms:.1f} ms" if stage.status != "skipped" else ""
        stages.add_row(stage.name, f"[{style}]{stage.status}[/]", timing)
    console.print(stages)
    if compilation.ok and compilation.artifacts is not None:
        stats = compilation.artifacts.stats
        console.print(
            f"[bold green]compiled[/] {compilation.filename}: {stats.steps} steps, {stats.levels} levels, "
            f"parallel width {stats.parallel_width}"
        )
        console.print(f"critical path: {' → '.join(stats.critical_path)}")
        console.print(f"plan hash: {compilation.artifacts.plan_hash}")
    summary = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    console.print(f"[bold red]failed[/]: {summary}" if not compilation.ok else summary)


def schema() -> None:
    """Print the JSON Schema of the native format (editors use it to validate and complete).

    Regenerate the published copy with: rte schema > schemas/rte-workflow.schema.json
    """
    sys.stdout.write(json.dumps(definition_json_schema(), indent=2, ensure_ascii=False) + "\n")
