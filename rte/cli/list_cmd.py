"""`rte list`: the executions, newest first, filtered by status, definition and start time.

The same visibility query as the API's execution list (`api/visibility.py`), so both answer alike.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from api import visibility
from api.errors import Problem
from api.models import ExecutionFilter, ExecutionSummary
from rte.cli._common import (
    DataDirOpt,
    Output,
    OutputOpt,
    connect_client,
    err_console,
    fail,
    run_async,
    settings_from,
)
from rte.cli._format import duration, parse_since, stdout_console, styled_status, when

STATUSES = tuple(visibility.TEMPORAL_STATUS)


def register(app: typer.Typer) -> None:
    app.command("list")(list_executions)


def list_executions(
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            "-s",
            help=f"Only these statuses (repeatable or comma-separated): {', '.join(STATUSES)}.",
        ),
    ] = None,
    definition: Annotated[
        str | None, typer.Option("--definition", "-d", help="Only this definition id.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Started at most this long ago (30m, 2h, 7d) or since this time (ISO 8601)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many, newest first.")] = 20,
    output: OutputOpt = Output.TEXT,
    data_dir: DataDirOpt = None,
) -> None:
    """List executions, newest first (child executions of big for_each steps hidden)."""
    statuses = [part.strip() for value in status or [] for part in value.split(",") if part.strip()]
    unknown = [name for name in statuses if name not in STATUSES]
    if unknown:
        fail(f"--status: unknown status {', '.join(map(repr, unknown))}", hint=f"use {', '.join(STATUSES)}")
    try:
        started_after = parse_since(since) if since else None
        filters = ExecutionFilter(definition_id=definition, status=statuses, started_after=started_after)  # type: ignore[arg-type]
    except ValueError as error:  # ValidationError is a ValueError
        fail(_reason(error))
    run_async(_list(filters, limit, output, data_dir))


def _reason(error: ValueError) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        field = {"definition_id": "--definition", "started_after": "--since"}.get(str(first["loc"][0]), "")
        return f"{field}: {first['msg']}".lstrip(": ")
    return str(error)


async def _list(filters: ExecutionFilter, limit: int, output: Output, data_dir: Path | None) -> int:
    settings = settings_from(data_dir=data_dir)
    client = await connect_client(settings)
    try:
        query = visibility.build_query(filters)
        found = [
            visibility.summary(info, settings) async for info in visibility.iterate(client, query, limit)
        ]
    except Problem as problem:
        fail(problem.detail, code=2 if problem.status < 500 else 1)
    if output == Output.JSON:
        sys.stdout.write(json.dumps([item.model_dump(mode="json") for item in found], indent=2) + "\n")
        return 0
    if not found:
        err_console.print("no executions match", highlight=False)
        return 0
    stdout_console().print(_table(found))
    if len(found) == limit:
        err_console.print(f"the newest {limit}; see more with --limit", highlight=False)
    return 0


def _table(found: list[ExecutionSummary]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("execution", "definition", "status", "started", "duration", "notes"):
        table.add_column(column, no_wrap=column != "notes")
    for item in found:
        definition = f"{item.definition_id or '?'} v{item.definition_version or '?'}"
        notes = [item.current_step or ""] if item.status == "running" else []
        if item.error_count:
            notes.append(f"{item.error_count} error{'s' * (item.error_count != 1)}")
        table.add_row(
            escape(item.execution_id),
            escape(definition),
            styled_status(item.status),
            when(item.start_time),
            duration(item.duration_ms),
            escape(", ".join(note for note in notes if note)),
        )
    return table
