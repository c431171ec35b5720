"""`rte logs ID [--follow]`: an execution's log lines from the store, or followed live until it ends."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated

import typer
from temporalio.client import Client

from rte.cli._common import (
    DataDirOpt,
    Output,
    OutputOpt,
    connect_client,
    describe_execution,
    err_console,
    fail,
    open_store,
    run_async,
    settings_from,
)
from rte.store import Store
from rte.store.repositories import LOG_LEVELS, MAX_PAGE, LogLevel, LogRow
from rte.watch import follow_logs


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)


def logs(
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the execution ends.")
    ] = False,
    level: Annotated[
        str | None, typer.Option(help=f"Minimum level: {', '.join(LOG_LEVELS)}.", show_default=False)
    ] = None,
    step: Annotated[
        str | None, typer.Option(help="Only this step (its id, or its full path).", show_default=False)
    ] = None,
    output: OutputOpt = Output.TEXT,
    data_dir: DataDirOpt = None,
) -> None:
    """Print an execution's logs (text, or one JSON object a line); --follow until it ends."""
    if level is not None and level not in LOG_LEVELS:
        fail(f"--level: unknown level '{level}'", hint=f"use {', '.join(LOG_LEVELS)}")
    run_async(_logs(execution, follow, level, step, output, data_dir))  # type: ignore[arg-type]


async def _logs(
    execution: str,
    follow: bool,
    level: LogLevel | None,
    step: str | None,
    output: Output,
    data_dir: Path | None,
) -> int:
    settings = settings_from(data_dir=data_dir)
    store = await open_store(settings, create=False)
    try:
        if follow:
            client = await connect_client(settings)
            await describe_execution(client, execution, settings)
            return await _follow(store, client, execution, level, step, output)
        printed = 0
        after_id: int | None = None
        while rows := await store.logs.query(execution, min_level=level, after_id=after_id, limit=MAX_PAGE):
            printed += _print(rows, step, output)
            after_id = rows[-1].id
        if printed == 0:  # the lines are in the store: Temporal is asked only when there are none
            await describe_execution(await connect_client(settings), execution, settings)
            err_console.print(f"no log lines{_filtered(level, step)} for {execution} (yet)", markup=False)
        return 0
    finally:
        await store.close()


async def _follow(
    store: Store, client: Client, execution: str, level: LogLevel | None, step: str | None, output: Output
) -> int:
    err_console.print(f"following the logs of {execution} until it ends (Ctrl-C stops)…", markup=False)

    def read_after(after_id: int | None) -> Awaitable[list[LogRow]]:
        return store.logs.query(execution, min_level=level, after_id=after_id, limit=MAX_PAGE)

    async with contextlib.aclosing(follow_logs(client, execution, read_after)) as rows:
        async for row in rows:
            _print([row], step, output)
    err_console.print(f"{execution} has ended", markup=False)
    return 0


def _print(rows: list[LogRow], step: str | None, output: Output) -> int:
    printed = 0
    for row in rows:
        # A step is named by its path (definition/step/…) or, more simply, by its id: the path's end.
        if step and row.step_path != step and not row.step_path.endswith(f"/{step}"):
            continue
        if output == Output.JSON:
            sys.stdout.write(row.model_dump_json() + "\n")
        else:
            where = row.step_path or "-"
            item = f"[{row.item_index}]" if row.item_index is not None else ""
            sys.stdout.write(
                f"{row.timestamp.astimezone().isoformat(timespec='milliseconds')} {row.level.upper():7} "
                f"[{where}{item} #{row.attempt}] {row.source}: {row.message}\n"
            )
        printed += 1
    sys.stdout.flush()
    return printed


def _filtered(level: str | None, step: str | None) -> str:
    parts = ([f"at level {level} or above"] if level else []) + ([f"of step {step}"] if step else [])
    return " " + " ".join(parts) if parts else ""
