"""`rte cancel ID` / `rte terminate ID`: stop a running execution — politely, or at once."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.service import RPCError

from api.visibility import status_name
from rte.cli._common import (
    RPC_TIMEOUT,
    DataDirOpt,
    command_line,
    connect_client,
    describe_execution,
    err_console,
    fail,
    run_async,
    settings_from,
)
from rte.config import Settings

ExecutionArg = Annotated[str, typer.Argument(help="Execution id.")]


def register(app: typer.Typer) -> None:
    app.command("cancel")(cancel)
    app.command("terminate")(terminate)


def cancel(
    execution: ExecutionArg,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the execution has ended.")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Ask a running execution to cancel: its running steps are cancelled, then it ends."""
    run_async(_cancel(execution, wait, data_dir))


def terminate(
    execution: ExecutionArg,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in its history).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """End a running execution at once, without cleanup (running steps are abandoned)."""
    run_async(_terminate(execution, reason or "terminated from the command line", data_dir))


async def _open_execution(execution: str, verb: str, settings: Settings) -> Client:
    client = await connect_client(settings)
    description = await describe_execution(client, execution, settings)
    _require_open(description, verb)
    return client


def _require_open(description: WorkflowExecutionDescription, verb: str) -> None:
    if description.status not in (None, WorkflowExecutionStatus.RUNNING):
        fail(f"cannot {verb} '{description.id}': it has already {_ended(description)}", code=1)


def _ended(description: WorkflowExecutionDescription) -> str:
    name = status_name(description.status)
    return {"cancelled": "been cancelled", "terminated": "been terminated", "timed_out": "timed out"}.get(
        name, name
    )


async def _cancel(execution: str, wait: bool, data_dir: Path | None) -> int:
    settings = settings_from(data_dir=data_dir)
    client = await _open_execution(execution, "cancel", settings)
    handle = client.get_workflow_handle(execution)
    try:
        await handle.cancel(rpc_timeout=RPC_TIMEOUT)
    except RPCError as error:
        fail(f"cannot cancel '{execution}': {error.message}", code=1)
    if not wait:
        err_console.print(
            f"cancellation requested for {execution}: it ends once its running steps have stopped "
            f"(see `{command_line(settings, 'status', execution)}`)",
            markup=False,
        )
        return 0
    # The end itself is awaited; what kind of end it was is read from Temporal next.
    waiting = err_console.status(f"cancellation requested; waiting for {execution} to end…")
    with waiting, contextlib.suppress(Exception):
        await handle.result()
    description = await describe_execution(client, execution, settings)
    err_console.print(f"{execution} has {_ended(description)}", markup=False)
    return 0 if description.status == WorkflowExecutionStatus.CANCELED else 1


async def _terminate(execution: str, reason: str, data_dir: Path | None) -> int:
    settings = settings_from(data_dir=data_dir)
    client = await _open_execution(execution, "terminate", settings)
    try:
        await client.get_workflow_handle(execution).terminate(reason=reason, rpc_timeout=RPC_TIMEOUT)
    except RPCError as error:
        fail(f"cannot terminate '{execution}': {error.message}", code=1)
    err_console.print(f"terminated {execution}: {reason}", markup=False)
    return 0
