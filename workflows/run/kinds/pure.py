"""`set`, `transform` and `switch`: evaluated in the workflow (through the expression boundary), no
activity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.plan import PlanStep
    from workflows.state import StepState

if TYPE_CHECKING:
    from workflows.run.run import Run


async def run_set(run: Run, step: PlanStep, scope: dict[str, Any], item: int | None, state: StepState | None) -> Any:
    return await run.template_or_fail(step, step.with_, scope)


async def run_transform(
    run: Run, step: PlanStep, scope: dict[str, Any], item: int | None, state: StepState | None
) -> Any:
    data = await run.template_or_fail(step, step.with_["input"], scope) if "input" in step.with_ else scope
    return await run.evaluate_or_fail(step, str(step.with_.get("jq", ".")), data)


async def run_switch(
    run: Run, step: PlanStep, scope: dict[str, Any], item: int | None, state: StepState | None
) -> Any:
    for case in step.cases:
        if case.when is None or await run.holds_or_fail(step, case.when, scope):
            run.switch_choices[step.id] = case.name
            return {"branch": case.name}
    run.switch_choices[step.id] = ""
    return {"branch": None}
