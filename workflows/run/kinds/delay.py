"""`delay`: a durable timer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from rte.errors import ErrorCategory
    from workflows.durations import parse_duration
    from workflows.plan import PlanStep
    from workflows.run.failures import StepFailed, error
    from workflows.state import StepState

if TYPE_CHECKING:
    from workflows.run.run import Run


async def run_delay(run: Run, step: PlanStep, scope: dict[str, Any], item: int | None, state: StepState | None) -> Any:
    params = await run.template_or_fail(step, step.with_, scope)
    try:
        seconds = parse_duration(params.get("duration"))
    except (TypeError, ValueError) as problem:
        raise StepFailed(error(ErrorCategory.VALIDATION, f"delay: {problem}")) from None
    await workflow.sleep(seconds)
    return {"slept_s": seconds}
