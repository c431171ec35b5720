"""`rte recover …`: decide a step paused on its error; retry or resume failed executions (one, many
ids, or every execution matching a filter — answered per execution)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from temporalio.client import Client, RPCError, WorkflowUpdateFailedError

from api import visibility
from api.errors import Problem
from api.models import BulkFilter
from rte.cli._common import (
    DataDirOpt,
    connect_client,
    connect_to_worker_of,
    err_console,
    fail,
    run_async,
    settings_from,
)
from rte.recovery import RecoveryError, resume_from_failure, retry_from_scratch
from workflows.state import ExecutionState, RecoveryDecision

recover = typer.Typer(
    help="Failure recovery: decisions, retry, resume from the failure.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(recover, name="recover")


def _json(text: str | None, option: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"{option} is not valid JSON: {error.msg}")


@recover.command("decide")
def decide(
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    step: Annotated[str, typer.Argument(help="Id or path of the step waiting for a decision.")],
    action: Annotated[str, typer.Argument(help="retry, skip or fail.")],
    input_json: Annotated[
        str | None, typer.Option("--input", help="retry: the step's input, as JSON.")
    ] = None,
    timeout_s: Annotated[
        float | None, typer.Option("--timeout", help="retry: a new timeout in seconds.")
    ] = None,
    output_json: Annotated[
        str | None, typer.Option("--output", help="skip: the substitute output, JSON.")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded).")] = None,
    by: Annotated[str, typer.Option("--by", help="Who decides (recorded).")] = "cli",
    data_dir: DataDirOpt = None,
) -> None:
    """Retry, skip or fail a step that waits after its error (on_error: pause)."""
    if action not in ("retry", "skip", "fail"):
        fail("ACTION is retry, skip or fail")
    decision = RecoveryDecision(
        step=step,
        action=action,  # type: ignore[arg-type]
        input=_json(input_json, "--input"),
        timeout_s=timeout_s,
        output=_json(output_json, "--output"),
        reason=reason,
        by=by,
    )

    async def send() -> int:
        client = await connect_to_worker_of(execution, settings_from(data_dir=data_dir))
        try:
            state = await client.get_workflow_handle(execution).execute_update(
                "decide_recovery", decision, result_type=ExecutionState
            )
        except WorkflowUpdateFailedError as error:
            fail(str(getattr(error.cause, "message", None) or error), code=1)
        except RPCError as error:
            fail(f"cannot reach execution '{execution}': {error.message}", code=1)
        err_console.print(f"{action} {step} of {execution} (execution {state.status.value})", markup=False)
        return 0

    run_async(send())


IdsArg = Annotated[list[str] | None, typer.Argument(help="Execution ids (or use the filter options).")]
DefinitionOpt = Annotated[str | None, typer.Option("--definition", help="Filter: definition id.")]
StatusOpt = Annotated[
    list[str] | None, typer.Option("--status", help="Filter: failed, cancelled, terminated…")
]
LimitOpt = Annotated[int, typer.Option("--limit", help="At most this many with a filter.")]
QueueOpt = Annotated[str | None, typer.Option("--task-queue", help="Task queue of the new executions.")]


@recover.command("retry")
def retry(
    ids: IdsArg = None,
    definition: DefinitionOpt = None,
    status: StatusOpt = None,
    limit: LimitOpt = 100,
    task_queue: QueueOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Start executions again from scratch with the same parameters."""
    run_async(_each(ids, definition, status, limit, task_queue, data_dir, resume=False))


@recover.command("resume")
def resume(
    ids: IdsArg = None,
    definition: DefinitionOpt = None,
    status: StatusOpt = None,
    limit: LimitOpt = 100,
    task_queue: QueueOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Resume executions from their failure, reusing the outputs of the steps that succeeded."""
    run_async(_each(ids, definition, status, limit, task_queue, data_dir, resume=True))


async def _each(
    ids: list[str] | None,
    definition: str | None,
    status: list[str] | None,
    limit: int,
    task_queue: str | None,
    data_dir: Path | None,
    *,
    resume: bool,
) -> int:
    settings = settings_from(data_dir=data_dir)
    client = await connect_client(settings)
    targets = list(ids or []) or await _matching(client, definition, status, limit)
    if not targets:
        fail("no execution given or matched", code=1)
    action = resume_from_failure if resume else retry_from_scratch
    failures = 0
    for execution in targets:
        try:
            new_id = await action(client, execution, task_queue=task_queue or settings.task_queue)
        except RecoveryError as error:
            failures += 1
            typer.echo(json.dumps({"execution_id": execution, "ok": False, "message": error.message}))
            continue
        typer.echo(json.dumps({"execution_id": execution, "ok": True, "new_execution_id": new_id}))
    return 1 if failures else 0


async def _matching(
    client: Client, definition: str | None, status: list[str] | None, limit: int
) -> list[str]:
    if definition is None and not status:
        return []
    try:
        query_filter = BulkFilter(definition_id=definition, status=status or ["failed"])  # type: ignore[arg-type]
    except ValueError as error:
        fail(f"invalid filter: {error}")
    try:
        query = visibility.build_query(query_filter)
        return [info.execution.workflow_id async for info in visibility.iterate(client, query, limit)]
    except Problem as problem:
        fail(problem.detail, code=2 if problem.status < 500 else 1)
