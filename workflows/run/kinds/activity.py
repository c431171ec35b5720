"""`http`, `ai`, `script`, `python`: the step's `with` evaluated (or an operator's edited input), then
its activity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.plan import PlanStep
    from workflows.state import StepState, bounded

if TYPE_CHECKING:
    from workflows.run.run import Run

# A for_each item's output over this many bytes is stored by reference, so a thousand items keep
# the history (and a slice's result, which must fit one 2 MB payload) small.
ITEM_OUTPUT_BUDGET_BYTES = 4096
SLICE_ITEM_OUTPUT_BUDGET_BYTES = 1024


async def run_activity(
    run: Run, step: PlanStep, scope: dict[str, Any], item: int | None, state: StepState | None
) -> Any:
    overridden, params = run.take_input_override(step, item)
    if not overridden:
        params = await run.template_or_fail(step, step.with_, scope)
    if state is not None:
        state.input = bounded(params)
    budget = None
    if item is not None:
        budget = SLICE_ITEM_OUTPUT_BUDGET_BYTES if run.input.slice is not None else ITEM_OUTPUT_BUDGET_BYTES
    result = await run.call_activity(step, params, item, output_budget_bytes=budget)
    if state is not None:
        state.attempts = int(result.metrics.get("attempt", 1))
        state.metrics = result.metrics
    return result.output
