"""Workflows that register as the engine's `RunPlan` but misbehave, as a bug or a mismatched worker
would: the API must answer their executions with clear problems, never a 500.

Each runs on a worker of its own (one per task queue), on the real dev server; no side effects at
import time (the workflow sandbox re-imports this module).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from rte.temporal import WORKFLOW_TYPE
    from workflows.state import ExecutionInput, ExecutionState


@workflow.defn(name=WORKFLOW_TYPE)
class StateQueryRaises:
    """Runs (waits) normally, but its `state` query handler raises."""

    @workflow.run
    async def run(self, run_input: ExecutionInput) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.query(name="state")
    def state(self) -> ExecutionState:
        raise RuntimeError("the state cannot be built (a bug in the workflow code)")


@workflow.defn(name=WORKFLOW_TYPE)
class TaskFailsAfterSignal:
    """Completes its first workflow task, then fails every task after the `break` signal."""

    def __init__(self) -> None:
        self.broken = False

    @workflow.run
    async def run(self, run_input: ExecutionInput) -> None:
        await workflow.wait_condition(lambda: self.broken)
        raise RuntimeError("a bug in the workflow code")  # not a Temporal failure: the task fails

    @workflow.signal(name="break")
    def break_it(self) -> None:
        self.broken = True

    @workflow.query(name="state")
    def state(self) -> ExecutionState:
        raise RuntimeError("unreachable while the task fails")
