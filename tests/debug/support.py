"""Helpers the debugger and recovery tests share: wait for a pause, send a command."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio.client import WorkflowHandle, WorkflowQueryFailedError
from temporalio.service import RPCError

from workflows.state import BreakpointChange, DebugCommand, ExecutionState, RecoveryDecision, VariableEdit


async def state_of(handle: WorkflowHandle[Any, Any]) -> ExecutionState:
    return await handle.query("state", result_type=ExecutionState)


async def wait_for(
    handle: WorkflowHandle[Any, Any], check: Callable[[ExecutionState], bool], timeout_s: float = 30
) -> ExecutionState:
    deadline = asyncio.get_running_loop().time() + timeout_s
    seen: ExecutionState | Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            state = await state_of(handle)
        except (RPCError, WorkflowQueryFailedError) as error:
            seen = error  # e.g. just after a worker died: its sticky queue times out, then a new one answers
        else:
            if check(state):
                return state
            seen = state
        await asyncio.sleep(0.1)
    shown = seen.model_dump_json()[:2000] if isinstance(seen, ExecutionState) else repr(seen)
    raise AssertionError(f"condition not met in {timeout_s} s; last seen: {shown}")


async def wait_paused(handle: WorkflowHandle[Any, Any], timeout_s: float = 30) -> ExecutionState:
    return await wait_for(handle, lambda state: state.debug.paused is not None, timeout_s)


async def command(handle: WorkflowHandle[Any, Any], action: str, target: str | None = None) -> ExecutionState:
    return await handle.execute_update(
        "debug_command", DebugCommand(action=action, target=target, by="tester"), result_type=ExecutionState
    )


async def breakpoint(handle: WorkflowHandle[Any, Any], change: BreakpointChange) -> ExecutionState:
    return await handle.execute_update("debug_breakpoint", change, result_type=ExecutionState)


async def edit(handle: WorkflowHandle[Any, Any], path: str, value: Any) -> ExecutionState:
    return await handle.execute_update(
        "debug_edit", VariableEdit(path=path, value=value, by="tester"), result_type=ExecutionState
    )


async def decide(handle: WorkflowHandle[Any, Any], decision: RecoveryDecision) -> ExecutionState:
    return await handle.execute_update("decide_recovery", decision, result_type=ExecutionState)
