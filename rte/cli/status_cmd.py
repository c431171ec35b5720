"""`rte status ID`: where an execution stands — its status, every step's state, what runs now, its
error, and the command that lets it go on when it waits for someone.

The summary comes from Temporal (it needs no worker); the step states from the interpreter's state
query, which a worker answers — without one, the summary alone is shown, and says why.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from temporalio.client import Client, WorkflowExecutionDescription, WorkflowQueryFailedError
from temporalio.service import RPCError

from api import visibility
from api.models import ExecutionSummary
from rte.cli._common import (
    DataDirOpt,
    Output,
    OutputOpt,
    connect_client,
    describe_execution,
    run_async,
    settings_from,
)
from rte.cli._format import duration, stdout_console, styled_status, when
from rte.cli.progress import render, unblock_hints
from rte.config import Settings
from rte.watch import NoWorkerError, read_state, worker_available
from workflows.state import ExecutionState

RPC_TIMEOUT = timedelta(seconds=10)


def register(app: typer.Typer) -> None:
    app.command("status")(status)


def status(
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    output: OutputOpt = Output.TEXT,
    data_dir: DataDirOpt = None,
) -> None:
    """Show an execution's status, its steps, the current step, its error and what it waits for."""
    run_async(_status(execution, output, data_dir))


async def _status(execution: str, output: Output, data_dir: Path | None) -> int:
    settings = settings_from(data_dir=data_dir)
    client = await connect_client(settings)
    description = await describe_execution(client, execution, settings)
    summary = visibility.summary(description.raw_description.workflow_execution_info, settings)
    state, why_not = await _state(client, description)
    if output == Output.JSON:
        document: dict[str, Any] = {
            "summary": summary.model_dump(mode="json"),
            "state": state.model_dump(mode="json") if state else None,
        }
        if why_not:
            document["state_unavailable"] = why_not
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
        return 0
    _print(stdout_console(), summary, state, why_not, settings)
    return 0


async def _state(
    client: Client, description: WorkflowExecutionDescription
) -> tuple[ExecutionState | None, str]:
    """The interpreter's state, or None and why not (answering it needs a worker)."""
    if not await worker_available(client, description.task_queue):
        return None, (
            f"no worker polls the task queue '{description.task_queue}', so the step states cannot be "
            "read; start one with `rte up` or `rte worker`"
        )
    handle = client.get_workflow_handle(description.id, run_id=description.run_id)
    try:
        return await read_state(handle), ""
    except NoWorkerError as error:
        return None, str(error)
    except (WorkflowQueryFailedError, RPCError) as error:
        return None, f"the state query failed: {error}"


def _print(
    console: Console,
    summary: ExecutionSummary,
    state: ExecutionState | None,
    why_not: str,
    settings: Settings,
) -> None:
    # The interpreter's status says more than Temporal's while it runs (waiting, paused).
    status = state.status.value if state and summary.status == "running" else summary.status
    console.print(f"[bold]{escape(summary.execution_id)}[/]  {styled_status(status)}")
    rows = [
        ("definition", f"{summary.definition_id} v{summary.definition_version} ({summary.trigger})"),
        ("started", when(summary.start_time)),
        (
            "ended",
            f"{when(summary.close_time)}  after {duration(summary.duration_ms)}"
            if summary.close_time
            else "",
        ),
        ("now running", ", ".join(state.current_steps) if state else (summary.current_step or "")),
        ("items", f"{summary.items_processed}/{summary.items_total}" if summary.items_total else ""),
        ("Temporal UI", summary.temporal_ui_url),
    ]
    for label, value in rows:
        if value:
            console.print(f"  {label:<12} {escape(value)}")
    if state is not None:
        console.print(render(state, title=False))
        if state.error is not None:
            where = f" at {state.error.step_path}" if state.error.step_path else ""
            console.print(
                f"[bold red]error[/] {escape(f'[{state.error.category}] {state.error.message}{where}')}"
            )
        for hint in unblock_hints(state, settings):
            console.print(f"→ {hint}", style="magenta", markup=False)
    elif why_not:
        console.print(f"[dim]{escape(why_not)}[/]")
