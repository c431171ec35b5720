"""Step debugging: breakpoints, commands, the paused scope, evaluate, edits, replay (operator role).

Every change is a workflow update on the interpreter (validated there, answered with the new state),
every read a query — so the debugger's state lives in the execution and survives restarts. When no
worker polls the execution's task queue the API answers 503 at once instead of hanging.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from api.connection_guard import bound_connection, is_admin, refused
from api.deps import OffloadDep, OperatorKey, TemporalClientDep
from api.errors import Problem, rpc_problem
from api.models import (
    BreakpointIn,
    BreakpointPatch,
    DebugCommandIn,
    DebugView,
    EvaluateIn,
    EvaluateOut,
    ReplayOut,
    VariableEditIn,
    problems,
)
from api.routes.executions import (
    QUERY_TIMEOUT,
    ExecutionId,
    _describe,
    _is_open,
    _no_worker,
    _require_worker,
    send_update,
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

router = APIRouter(
    prefix="/executions/{execution_id}/debug",
    tags=["debugging"],
    responses=problems(401, 403, 404, 409, 422, 503),
)


@router.get("", response_model=DebugView)
async def debug_view(execution_id: ExecutionId, client: TemporalClientDep, _: OperatorKey) -> DebugView:
    """Where the execution is paused and why, its breakpoints, audit trail and (while paused) its scope."""
    state = await query(client, execution_id, "state", None, ExecutionState)
    scope = await query(client, execution_id, "debug_scope", None, dict) if state.debug.paused else None
    awaiting = [path for path, step in state.steps.items() if step.awaiting_decision]
    return DebugView(
        execution_id=execution_id,
        execution_status=state.status.value,
        debug=state.debug.model_dump(mode="json"),
        scope=scope,
        awaiting_decision=awaiting,
    )


@router.post("/commands", response_model=DebugView)
async def debug_command(
    execution_id: ExecutionId, body: DebugCommandIn, client: TemporalClientDep, key: OperatorKey
) -> DebugView:
    """pause (at the next step boundary), continue, step_over, step_into, step_out, run_to a step."""
    command = DebugCommand(action=body.action, target=body.target, by=key.name)
    return _view(execution_id, await send_update(client, execution_id, "debug_command", command))


@router.post("/breakpoints", response_model=DebugView, status_code=201)
async def add_breakpoint(
    execution_id: ExecutionId, body: BreakpointIn, client: TemporalClientDep, key: OperatorKey
) -> DebugView:
    """Add a breakpoint (attaches the debugger to a running execution)."""
    change = BreakpointChange(action="add", breakpoint=Breakpoint(**body.model_dump()), by=key.name)
    return _view(execution_id, await send_update(client, execution_id, "debug_breakpoint", change))


@router.patch("/breakpoints/{breakpoint_id}", response_model=DebugView)
async def set_breakpoint(
    execution_id: ExecutionId,
    breakpoint_id: str,
    body: BreakpointPatch,
    client: TemporalClientDep,
    key: OperatorKey,
) -> DebugView:
    """Enable or disable a breakpoint."""
    change = BreakpointChange(action="enable" if body.enabled else "disable", id=breakpoint_id, by=key.name)
    return _view(execution_id, await send_update(client, execution_id, "debug_breakpoint", change))


@router.delete("/breakpoints/{breakpoint_id}", response_model=DebugView)
async def remove_breakpoint(
    execution_id: ExecutionId, breakpoint_id: str, client: TemporalClientDep, key: OperatorKey
) -> DebugView:
    """Remove a breakpoint."""
    change = BreakpointChange(action="remove", id=breakpoint_id, by=key.name)
    return _view(execution_id, await send_update(client, execution_id, "debug_breakpoint", change))


@router.post("/variables", response_model=DebugView)
async def edit_variable(
    execution_id: ExecutionId,
    body: VariableEditIn,
    client: TemporalClientDep,
    offload: OffloadDep,
    key: OperatorKey,
) -> DebugView:
    """Edit a variable or the next step's input while paused (recorded: who, when, old → new).

    Below admin, refused (403) while paused at a step bound to a connection."""
    if not is_admin(key):
        state = await query(client, execution_id, "state", None, ExecutionState)
        paused = state.debug.paused
        connection = await bound_connection(client, execution_id, paused.step_path) if paused else None
        if paused and connection:
            raise refused(key, f"editing '{body.path}' while paused at", paused.step_path, connection)
    edit = VariableEdit(path=body.path, value=body.value, by=key.name)
    return _view(execution_id, await send_update(client, execution_id, "debug_edit", edit, offload))


@router.post("/evaluate", response_model=EvaluateOut)
async def evaluate(
    execution_id: ExecutionId, body: EvaluateIn, client: TemporalClientDep, _: OperatorKey
) -> EvaluateOut:
    """Evaluate a jq expression against the paused scope (bounded in time and size)."""
    result = await evaluate_at_pause(
        lambda name, argument, result_type: query(client, execution_id, name, argument, result_type),
        body.expression,
    )
    return EvaluateOut(ok=result.ok, value=result.value, error=result.error)


@router.get("/replay", response_model=ReplayOut)
async def replay(
    execution_id: ExecutionId,
    client: TemporalClientDep,
    _: OperatorKey,
    position: int = Query(0, ge=0, description="Which recorded step: step forward and back by changing it."),
) -> ReplayOut:
    """A finished execution's recorded steps, one at a time, with the variables as they were."""
    try:
        frames = await recorded_steps(client, execution_id)
    except RecoveryError as error:
        raise Problem(error.status, "Cannot replay", error.message) from None
    frame = frames[position].model_dump(mode="json") if position < len(frames) else None
    return ReplayOut(execution_id=execution_id, position=position, total=len(frames), frame=frame)


def _view(execution_id: str, state: ExecutionState) -> DebugView:
    return DebugView(
        execution_id=execution_id,
        execution_status=state.status.value,
        debug=state.debug.model_dump(mode="json"),
        awaiting_decision=[path for path, step in state.steps.items() if step.awaiting_decision],
    )


async def query(
    client: Client, execution_id: str, name: str, argument: BaseModel | None, result_type: Any
) -> Any:
    description = await _describe(client, execution_id)
    if _is_open(description):
        await _require_worker(client, description)
    handle = client.get_workflow_handle(execution_id)
    args = [] if argument is None else [argument]
    try:
        return await asyncio.wait_for(
            handle.query(name, *args, result_type=result_type, rpc_timeout=QUERY_TIMEOUT),
            timeout=QUERY_TIMEOUT.total_seconds(),
        )
    except WorkflowQueryFailedError as error:
        raise Problem(409, "Query failed", str(error)) from None
    except TimeoutError:
        raise _no_worker(f"no worker answered within {QUERY_TIMEOUT.total_seconds():g} s") from None
    except RPCError as error:
        if error.status == RPCStatusCode.DEADLINE_EXCEEDED:
            raise _no_worker("no worker answered the query in time") from None
        raise rpc_problem(error, "the query failed") from None
