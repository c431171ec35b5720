"""A native plan's block: every step starts when the steps it needs have ended; the first failure in
plan order ends the block (the others are cancelled). Switches gate the steps their cases name."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from rte.errors import ErrorCategory
    from workflows.plan import PlanBlock, PlanStep, StepKind
    from workflows.run.failures import StepFailed, error

if TYPE_CHECKING:
    from workflows.run.run import Run


async def run_block(run: Run, block: PlanBlock) -> None:
    if block.mode != "dag":
        raise StepFailed(error(ErrorCategory.CONFIGURATION, "sequence blocks are not supported yet"))
    done = {step.id: asyncio.Event() for step in block.steps}
    tasks = [asyncio.create_task(_run_when_ready(run, step, done)) for step in block.steps]
    try:
        pending = set(tasks)
        while pending:
            finished, pending = await workflow.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            # Several steps can fail in one activation: the first in plan order decides, the same
            # way on every replay.
            failed = next((t for t in tasks if t in finished and t.exception() is not None), None)
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()


async def _run_when_ready(run: Run, step: PlanStep, done: dict[str, asyncio.Event]) -> None:
    try:
        for need in step.needs:
            await done[need].wait()
        await run.run_step(step)
    finally:
        done[step.id].set()


def switch_gates(block: PlanBlock) -> dict[str, tuple[str, frozenset[str]]]:
    """Step id → (switch id, names of the cases that enable it), for steps a DAG switch gates."""
    gates: dict[str, tuple[str, set[str]]] = {}
    if block.mode != "dag":
        return {}
    for step in block.steps:
        if step.kind != StepKind.SWITCH:
            continue
        for case in step.cases:
            for target in (t.strip() for t in case.then.split(",")):
                if target and target not in ("continue", "exit", "end"):
                    gates.setdefault(target, (step.id, set()))[1].add(case.name)
    return {target: (switch, frozenset(cases)) for target, (switch, cases) in gates.items()}
