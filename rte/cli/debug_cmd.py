"""`rte debug …`: step-debug an execution from the terminal.

Every command is a workflow update (or query) on the interpreter, so it works on any execution a
worker serves — attaching to one that is running, or one started in debug mode (API `config.debug`
/ `config.breakpoints`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from temporalio.client import RPCError, WorkflowQueryFailedError, WorkflowUpdateFailedError

from rte.cli._common import (
    DataDirOpt,
    connect_client,
    connect_to_worker_of,
    err_console,
    fail,
    run_async,
    settings_from,
)
from rte.debug_evaluation import evaluate_at_pause
from rte.recovery import RecoveryError, recorded_steps
from workflows.state import (
    Breakpoint,
    BreakpointChange,
    DebugCommand,
    ExecutionState,
    VariableEdit,
)

debug = typer.Typer(help="Step debugging: breakpoints, stepping, variables, replay.", no_args_is_help=True)

ExecutionArg = Annotated[str, typer.Argument(help="Execution id.")]
ByOpt = Annotated[str, typer.Option("--by", help="Who (recorded in the audit trail).")]


def register(app: typer.Typer) -> None:
    app.add_typer(debug, name="debug")


def _print(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _json(text: str, option: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"{option} is not valid JSON: {error.msg}")


async def _update(execution: str, name: str, argument: BaseModel, data_dir: Path | None) -> int:
    client = await connect_to_worker_of(execution, settings_from(data_dir=data_dir))
    try:
        state = await client.get_workflow_handle(execution).execute_update(
            name, argument, result_type=ExecutionState
        )
    except WorkflowUpdateFailedError as error:
        fail(str(getattr(error.cause, "message", None) or error), code=1)
    except RPCError as error:
        fail(f"cannot reach execution '{execution}': {error.message}", code=1)
    _print({"status": state.status.value, "debug": state.debug.model_dump(mode="json")})
    return 0


async def _query(
    execution: str, name: str, *args: Any, result_type: Any = None, data_dir: Path | None = None
) -> Any:
    client = await connect_to_worker_of(execution, settings_from(data_dir=data_dir))
    try:
        return await client.get_workflow_handle(execution).query(name, *args, result_type=result_type)
    except (WorkflowQueryFailedError, RPCError) as error:
        fail(f"cannot query execution '{execution}': {error}", code=1)


def _command(action: str) -> Any:
    def run(execution: ExecutionArg, by: ByOpt = "cli", data_dir: DataDirOpt = None) -> None:
        command = DebugCommand(action=action, by=by)  # type: ignore[arg-type]
        run_async(_update(execution, "debug_command", command, data_dir))

    run.__doc__ = {
        "pause": "Pause at the next step boundary (attaches the debugger).",
        "continue": "Continue until the next breakpoint.",
        "step_over": "Run the next step, then pause again.",
        "step_into": "Pause at the very next boundary (into a for_each, item by item).",
        "step_out": "Run to the end of the for_each being stepped through.",
    }[action]
    return run


for _action in ("pause", "continue", "step_over", "step_into", "step_out"):
    debug.command(_action.replace("_", "-"))(_command(_action))


@debug.command("run-to")
def run_to(
    execution: ExecutionArg,
    step: Annotated[str, typer.Argument(help="Step id or path.")],
    by: ByOpt = "cli",
    data_dir: DataDirOpt = None,
) -> None:
    """Continue until the step is about to run."""
    command = DebugCommand(action="run_to", target=step, by=by)
    run_async(_update(execution, "debug_command", command, data_dir))


@debug.command("status")
def status(execution: ExecutionArg, data_dir: DataDirOpt = None) -> None:
    """Where the execution is paused and why, breakpoints, audit trail, and the variables in scope."""

    async def show() -> int:
        state = await _query(execution, "state", result_type=ExecutionState, data_dir=data_dir)
        scope = (
            await _query(execution, "debug_scope", result_type=dict, data_dir=data_dir)
            if state.debug.paused
            else None
        )
        _print({"status": state.status.value, "debug": state.debug.model_dump(mode="json"), "scope": scope})
        return 0

    run_async(show())


@debug.command("break")
def add_breakpoint(
    execution: ExecutionArg,
    step: Annotated[str, typer.Argument(help="Step id or path.")],
    when: Annotated[str, typer.Option("--when", help="before, after or error.")] = "before",
    condition: Annotated[
        str | None, typer.Option("--if", help="jq condition, e.g. '.item.amount > 1000'.")
    ] = None,
    items: Annotated[str | None, typer.Option("--items", help="for_each item indexes, e.g. 3,7.")] = None,
    by: ByOpt = "cli",
    data_dir: DataDirOpt = None,
) -> None:
    """Add a breakpoint."""
    if when not in ("before", "after", "error"):
        fail("--when is before, after or error")
    try:
        indexes = [int(part) for part in items.split(",")] if items else None
    except ValueError:
        fail(f"--items takes item indexes separated by commas, e.g. 3,7 — not '{items}'")
    breakpoint = Breakpoint(step=step, when=when, condition=condition, items=indexes)  # type: ignore[arg-type]
    change = BreakpointChange(action="add", breakpoint=breakpoint, by=by)
    run_async(_update(execution, "debug_breakpoint", change, data_dir))


def _change(action: str) -> Any:
    def run(
        execution: ExecutionArg,
        breakpoint_id: Annotated[str, typer.Argument(help="Breakpoint id (bp1…).")],
        by: ByOpt = "cli",
        data_dir: DataDirOpt = None,
    ) -> None:
        change = BreakpointChange(action=action, id=breakpoint_id, by=by)  # type: ignore[arg-type]
        run_async(_update(execution, "debug_breakpoint", change, data_dir))

    run.__doc__ = f"{action.capitalize()} a breakpoint."
    return run


for _action in ("enable", "disable", "remove"):
    debug.command(_action)(_change(_action))


@debug.command("eval")
def evaluate(
    execution: ExecutionArg,
    expression: Annotated[str, typer.Argument(help="jq expression.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Evaluate a jq expression against the paused scope (bounded in time and size)."""

    async def show() -> int:
        result = await evaluate_at_pause(
            lambda name, argument, result_type: _query(
                execution,
                name,
                *([argument] if argument is not None else []),
                result_type=result_type,
                data_dir=data_dir,
            ),
            expression,
        )
        if not result.ok:
            fail(result.error or "evaluation failed", code=1)
        _print(result.value)
        return 0

    run_async(show())


@debug.command("set")
def set_variable(
    execution: ExecutionArg,
    path: Annotated[str, typer.Argument(help="inputs.x, steps.<id>.output…, item…, input…")],
    value: Annotated[str, typer.Argument(help="The new value, as JSON.")],
    by: ByOpt = "cli",
    data_dir: DataDirOpt = None,
) -> None:
    """Edit a variable or the next step's input while paused (audited)."""
    edit = VariableEdit(path=path, value=_json(value, "VALUE"), by=by)
    run_async(_update(execution, "debug_edit", edit, data_dir))


@debug.command("replay")
def replay(
    execution: ExecutionArg,
    at: Annotated[int | None, typer.Option("--at", help="Only this recorded step (0-based).")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Step through a finished execution's recorded steps with the variables as they were."""

    async def show() -> int:
        client = await connect_client(settings_from(data_dir=data_dir))
        try:
            frames = await recorded_steps(client, execution)
        except RecoveryError as error:
            fail(error.message, code=1)
        chosen = frames if at is None else frames[at : at + 1]
        if at is not None and not chosen:
            fail(f"there are {len(frames)} recorded steps; --at {at} is past the end", code=1)
        _print([frame.model_dump(mode="json") for frame in chosen])
        err_console.print(f"{len(frames)} recorded steps")
        return 0

    run_async(show())
