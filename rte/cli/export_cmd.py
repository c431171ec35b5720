"""`rte export`: write a definition in another workflow language (Serverless Workflow 1.0)."""

from __future__ import annotations

import io
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from ruamel.yaml import YAML

from workflows.compiler import compile_file
from workflows.diagnostics import format_diagnostic
from workflows.swf.export import export_swf


class ExportFormat(StrEnum):
    SWF = "swf"


def register(app: typer.Typer) -> None:
    app.command("export")(export_definition)


def export_definition(
    file: Annotated[Path, typer.Argument(help="Definition file (YAML or JSON).")],
    export_format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="swf: Serverless Workflow 1.0.")
    ] = ExportFormat.SWF,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write here (.json for JSON, else YAML); default stdout."),
    ] = None,
) -> None:
    """Export a definition as Serverless Workflow 1.0, where its plan allows it.

    Exits 1 when the definition does not compile or cannot be expressed, 2 when a file cannot be read
    or written.
    """
    try:
        compilation = compile_file(file)
    except OSError as error:
        print(f"rte export: cannot read '{file}': {error.strerror or error}", file=sys.stderr)
        raise typer.Exit(2) from None
    if not compilation.ok or compilation.plan is None:
        for diagnostic in compilation.diagnostics:
            print(format_diagnostic(diagnostic, str(file)), file=sys.stderr)
        print(f"rte export: {file} does not compile", file=sys.stderr)
        raise typer.Exit(1)
    exported = export_swf(compilation.plan)
    if exported.document is None:
        print(f"rte export: {file} cannot be written as Serverless Workflow:", file=sys.stderr)
        for problem in exported.problems:
            print(f"  - {problem}", file=sys.stderr)
        raise typer.Exit(1)
    as_json = out is not None and out.suffix.lower() == ".json"
    text = (
        json.dumps(exported.document, indent=2, ensure_ascii=False) + "\n"
        if as_json
        else _yaml(exported.document)
    )
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text)
    except OSError as error:
        print(f"rte export: cannot write '{out}': {error.strerror or error}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(f"wrote {out} (Serverless Workflow {export_format.value})", file=sys.stderr)


def _yaml(document: dict[str, Any]) -> str:
    writer = YAML()
    writer.default_flow_style = False
    writer.width = 4096  # one expression per line, never folded
    buffer = io.StringIO()
    writer.dump(document, buffer)
    return buffer.getvalue()
