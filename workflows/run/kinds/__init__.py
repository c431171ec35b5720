"""One small handler per step kind, dispatched by `run_kind`; an unknown kind fails loudly.

A handler is `async (run, step, scope, item_index, state) -> output`: `scope` is what the step's
expressions see, `item_index` is set for a for_each item, `state` is the step's state (None for an
item, whose progress the for_each keeps).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from rte.errors import ErrorCategory
    from workflows.plan import PlanStep, StepKind
    from workflows.run.failures import StepFailed, error
    from workflows.run.kinds.activity import run_activity
    from workflows.run.kinds.approval import run_approval
    from workflows.run.kinds.delay import run_delay
    from workflows.run.kinds.pure import run_set, run_switch, run_transform
    from workflows.state import StepState

if TYPE_CHECKING:
    from workflows.run.run import Run

KindHandler = Callable[["Run", PlanStep, dict[str, Any], int | None, StepState | None], Awaitable[Any]]

HANDLERS: dict[StepKind, KindHandler] = {
    StepKind.SET: run_set,
    StepKind.TRANSFORM: run_transform,
    StepKind.SWITCH: run_switch,
    StepKind.HTTP: run_activity,
    StepKind.AI: run_activity,
    StepKind.SCRIPT: run_activity,
    StepKind.PYTHON: run_activity,
    StepKind.DELAY: run_delay,
    StepKind.APPROVAL: run_approval,
}


async def run_kind(
    run: Run, step: PlanStep, scope: dict[str, Any], item_index: int | None, state: StepState | None
) -> Any:
    handler = HANDLERS.get(step.kind)
    if handler is None:
        raise StepFailed(
            error(ErrorCategory.CONFIGURATION, f"step kind '{step.kind}' is not supported by this engine")
        )
    return await handler(run, step, scope, item_index, state)
