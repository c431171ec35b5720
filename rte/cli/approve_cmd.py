"""`rte approve` / `rte reject`: decide an approval step that is waiting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from temporalio.client import RPCError, WorkflowUpdateFailedError

from rte.cli._common import (
    DataDirOpt,
    connect_to_worker_of,
    err_console,
    fail,
    run_async,
    settings_from,
)
from workflows.state import ApprovalDecision


def register(app: typer.Typer) -> None:
    app.command("approve")(approve)
    app.command("reject")(reject)


ExecutionArg = Annotated[str, typer.Argument(help="Execution id.")]
StepArg = Annotated[str, typer.Argument(help="Id (or path) of the waiting approval step.")]
ByOpt = Annotated[str, typer.Option("--by", help="Who decides (recorded).")]
CommentOpt = Annotated[str | None, typer.Option("--comment", help="Why (recorded).")]
PayloadOpt = Annotated[str | None, typer.Option("--payload", help="JSON handed to the next steps.")]
ItemOpt = Annotated[int | None, typer.Option("--item", help="for_each item index.")]


def approve(
    execution: ExecutionArg,
    step: StepArg,
    by: ByOpt = "cli",
    comment: CommentOpt = None,
    payload: PayloadOpt = None,
    item: ItemOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Approve a waiting approval step."""
    run_async(_decide(execution, step, True, by, comment, payload, item, data_dir))


def reject(
    execution: ExecutionArg,
    step: StepArg,
    by: ByOpt = "cli",
    comment: CommentOpt = None,
    payload: PayloadOpt = None,
    item: ItemOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Reject a waiting approval step (the step fails with category 'rejected')."""
    run_async(_decide(execution, step, False, by, comment, payload, item, data_dir))


async def _decide(
    execution: str,
    step: str,
    approved: bool,
    by: str,
    comment: str | None,
    payload: str | None,
    item: int | None,
    data_dir: Path | None,
) -> int:
    data: Any = None
    if payload is not None:
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as error:
            fail(f"--payload is not valid JSON: {error.msg}")
    client = await connect_to_worker_of(execution, settings_from(data_dir=data_dir))
    decision = ApprovalDecision(
        step=step, item_index=item, approved=approved, by=by, comment=comment, payload=data
    )
    try:
        await client.get_workflow_handle(execution).execute_update("decide_approval", decision)
    except WorkflowUpdateFailedError as error:
        fail(str(error.cause.message if error.cause and hasattr(error.cause, "message") else error), code=1)
    except RPCError as error:
        fail(f"cannot decide on execution '{execution}': {error.message}", code=1)
    err_console.print(f"{'approved' if approved else 'rejected'} {step} of {execution}", markup=False)
    return 0
