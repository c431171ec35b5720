"""`rte definitions push|list`: store a definition's new version, list what the store holds.

A version is what `rte run` and the API record too (`run_cmd.save_definition`): a new one whenever the
plan changes, never when only formatting does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from rte.cli._common import (
    DataDirOpt,
    Output,
    OutputOpt,
    err_console,
    fail,
    open_store,
    run_async,
    settings_from,
)
from rte.cli._format import stdout_console, when
from rte.cli.run_cmd import save_definition
from rte.store import DefinitionRow
from rte.store.catalog import load_swf_catalog
from workflows.compiler import compile_file
from workflows.diagnostics import format_diagnostic

definitions = typer.Typer(
    help="Definitions in the store: push new versions, list them.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(definitions, name="definitions")


@definitions.command("push")
def push(
    file: Annotated[Path, typer.Argument(help="Definition file (YAML or JSON).")],
    output: OutputOpt = Output.TEXT,
    data_dir: DataDirOpt = None,
) -> None:
    """Compile a definition and store it as a new version (when its plan changed); print the version.

    Exits 1 when it does not compile, 2 when the file cannot be read.
    """
    try:
        source = file.read_text()
    except (OSError, UnicodeDecodeError) as error:
        fail(f"cannot read '{file}': {getattr(error, 'strerror', None) or error}")
    run_async(_push(file, source, output, data_dir))


async def _push(file: Path, source: str, output: Output, data_dir: Path | None) -> int:
    store = await open_store(settings_from(data_dir=data_dir), create=True)
    try:
        # Serverless Workflow `run: workflow` tasks may name workflows stored before.
        compilation = compile_file(file, catalog=await load_swf_catalog(store.definitions))
        for diagnostic in compilation.diagnostics:
            err_console.print(format_diagnostic(diagnostic, str(file)), highlight=False, markup=False)
        if not compilation.ok or compilation.plan is None:
            fail(f"{file} does not compile; nothing was stored", code=1)
        plan = compilation.plan
        previous = await store.definitions.get(plan.definition_id)
        version = await save_definition(store, plan, source)
    finally:
        await store.close()
    changed = previous is None or previous.version != version
    if output == Output.JSON:
        document = {"id": plan.definition_id, "version": version, "changed": changed, "plan_hash": plan.hash}
        sys.stdout.write(json.dumps(document) + "\n")
        return 0
    if changed:
        err_console.print(f"stored {plan.definition_id} version {version} ({plan.hash})", markup=False)
    else:
        err_console.print(
            f"{plan.definition_id} is unchanged: version {version} has the same plan ({plan.hash})",
            markup=False,
        )
    print(version)
    return 0


@definitions.command("list")
def list_definitions(
    definition: Annotated[
        str | None, typer.Argument(help="A definition id: list its versions.", show_default=False)
    ] = None,
    output: OutputOpt = Output.TEXT,
    data_dir: DataDirOpt = None,
) -> None:
    """List the stored definitions (their latest versions), or every version of one."""
    run_async(_list(definition, output, data_dir))


async def _list(definition: str | None, output: Output, data_dir: Path | None) -> int:
    store = await open_store(settings_from(data_dir=data_dir), create=False)
    try:
        if definition is None:
            rows = await store.definitions.list_latest()
        else:
            rows = list(reversed(await store.definitions.list_versions(definition)))  # newest first
            if not rows:
                fail(
                    f"no definition '{definition}' in the store",
                    code=1,
                    hint="see them with `rte definitions list`",
                )
    finally:
        await store.close()
    if output == Output.JSON:
        fields = ("id", "version", "name", "description", "format", "plan_hash", "created_at")
        document = [row.model_dump(mode="json", include=set(fields)) for row in rows]
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return 0
    if not rows:
        err_console.print(
            "no definitions stored yet; store one with `rte definitions push FILE`", markup=False
        )
        return 0
    stdout_console().print(_table(rows, versions=definition is not None))
    return 0


def _table(rows: list[DefinitionRow], *, versions: bool) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = (
        ("version", "created", "plan hash") if versions else ("id", "version", "name", "format", "created")
    )
    for column in columns:
        table.add_column(column)
    for row in rows:
        cells = (
            (row.version, when(row.created_at), row.plan_hash)
            if versions
            else (row.id, row.version, row.name, row.format, when(row.created_at))
        )
        table.add_row(*(escape(cell) for cell in cells))
    return table
