"""The one generic Temporal workflow that runs any plan.

`RunPlan` is thin: it builds a `Run` (workflows/run/), runs the plan — a native DAG with
`Run.run_block`, a Serverless Workflow plan with `Flow` (workflows/swf/flow.py) — and answers the
`state` and `trail` queries and the approval update. A failed execution fails the
workflow with an `ApplicationError` whose type is the error category, so it reads well in the
Temporal Web UI as well as through the API.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from rte.errors import EngineError, ErrorCategory
    from workflows.debugger import rejected
    from workflows.expression_boundary import evaluate_template
    from workflows.run import Run, StepFailed, approval_key
    from workflows.state import (
        ApprovalDecision,
        BreakpointChange,
        DebugCommand,
        ErrorInfo,
        EvaluateRequest,
        EvaluateResult,
        ExecutionInput,
        ExecutionState,
        ExecutionStatus,
        ItemRecord,
        RecoveryDecision,
        StepStatus,
        VariableEdit,
        bounded,
    )
    from workflows.swf.flow import Flow


@workflow.defn(name="RunPlan")
class RunPlan:
    @workflow.init
    def __init__(self, run_input: ExecutionInput) -> None:
        # Built before any handler runs, so queries and updates always see the execution's state.
        self._run = Run(run_input)

    @workflow.run
    async def run(self, run_input: ExecutionInput) -> Any:
        run = self._run
        if run_input.slice is not None:
            return await run.run_slice(run_input.slice)
        try:
            if run.plan.expression_mode == "swf":
                output = await Flow(run).run_workflow()
            else:
                await run.run_block(run.plan.root)
                output = await self._outputs(run)
        except StepFailed as failure:
            self._finish(run, ExecutionStatus.FAILED, error=failure.error)
            raise ApplicationError(
                _failure_message(failure.error),
                failure.error.model_dump(mode="json"),
                type=failure.error.category,
                non_retryable=True,
            ) from None
        self._finish(run, ExecutionStatus.COMPLETED, output=output)
        return output

    async def _outputs(self, run: Run) -> Any:
        completed = {
            path: state for path, state in run.state.steps.items() if state.status == StepStatus.COMPLETED
        }
        steps = {
            state.id: {"output": run.results.get(state.id), "status": state.status.value}
            for state in run.state.steps.values()
        }
        if run.plan.outputs is None:
            # Through the boundary: when large, the outputs come back stored by reference.
            return await evaluate_template(
                "${ . }", {state.id: run.results.get(state.id) for state in completed.values()}
            )
        try:
            return await evaluate_template(run.plan.outputs, {"inputs": run.params, "steps": steps})
        except EngineError as error:
            raise StepFailed(
                ErrorInfo(
                    category=error.category.value, message=f"outputs: {error.message}", details=error.details
                )
            ) from None

    def _finish(
        self, run: Run, status: ExecutionStatus, output: Any = None, error: ErrorInfo | None = None
    ) -> None:
        run.state.status, run.state.ended_at = status, workflow.now()
        run.state.output, run.state.error = bounded(output), error
        run.state.current_steps = []

    @workflow.query(name="state")
    def state(self) -> ExecutionState:
        state = self._run.state
        if state.status == ExecutionStatus.RUNNING and (state.debug.paused or self._run.awaiting):
            return state.model_copy(update={"status": ExecutionStatus.PAUSED})
        if state.status == ExecutionStatus.RUNNING and self._run.waiting_approvals:
            return state.model_copy(update={"status": ExecutionStatus.WAITING})
        return state

    @workflow.query(name="recorded_outputs")
    def recorded_outputs(self) -> dict[str, Any]:
        """Step path → full output of every step that completed (what a resumed execution reuses)."""
        run = self._run
        return {
            path: run.results.get(state.id)
            for path, state in run.state.steps.items()
            if state.status == StepStatus.COMPLETED and state.id in run.results
        }

    @workflow.query(name="trail")
    def trail(self) -> list[str]:
        """Step paths in the order they started (a step that runs again appears again)."""
        return self._run.trail

    @workflow.update(name="decide_approval")
    async def decide_approval(self, decision: ApprovalDecision) -> ExecutionState:
        self._run.approvals[self._approval_key(decision)] = decision
        return self._run.state

    @decide_approval.validator
    def _validate_approval(self, decision: ApprovalDecision) -> None:
        key = self._approval_key(decision)
        request = self._run.waiting_approvals.get(key)
        if request is None:
            waiting = ", ".join(sorted(self._run.waiting_approvals)) or "none"
            raise ApplicationError(
                f"step '{decision.step}' is not waiting for approval (waiting: {waiting})",
                type=ErrorCategory.VALIDATION.value,
            )
        if request.approvers and decision.by not in request.approvers:
            raise ApplicationError(
                f"'{decision.by}' may not decide step '{decision.step}': its approvers are "
                f"{', '.join(request.approvers)}",
                type=ErrorCategory.VALIDATION.value,
            )

    # ---------------------------------------------------------------- debugging
    @workflow.update(name="debug_command")
    async def debug_command(self, command: DebugCommand) -> ExecutionState:
        """pause, continue, step_over, step_into, step_out, run_to."""
        self._run.debugger.command(command, workflow.now())
        return self.state()

    @debug_command.validator
    def _validate_debug_command(self, command: DebugCommand) -> None:
        self._require_open()
        self._run.debugger.validate_command(command)

    @workflow.update(name="debug_breakpoint")
    async def debug_breakpoint(self, change: BreakpointChange) -> ExecutionState:
        self._run.debugger.change_breakpoint(change, workflow.now())
        return self.state()

    @debug_breakpoint.validator
    def _validate_breakpoint(self, change: BreakpointChange) -> None:
        self._require_open()
        self._run.debugger.validate_breakpoint(change)

    @workflow.update(name="debug_edit")
    async def debug_edit(self, edit: VariableEdit) -> ExecutionState:
        """Change a variable (or the next step's input) while paused; audited in the state."""
        self._run.debugger.edit(edit, self._run.results, self._run.params, workflow.now())
        return self.state()

    @debug_edit.validator
    def _validate_edit(self, edit: VariableEdit) -> None:
        self._require_open()
        self._run.debugger.validate_edit(edit)

    @workflow.query(name="debug_evaluate")
    def debug_evaluate(self, request: EvaluateRequest) -> EvaluateResult:
        """A jq expression over the paused scope, when it is provably cheap on it; otherwise the
        answer says so and the caller evaluates it in its guarded evaluator over `debug_variables`
        (a query must not wait on anything, nor run a costly program in the workflow thread)."""
        return self._run.debugger.evaluate(request.expression)

    @workflow.query(name="debug_variables")
    def debug_variables(self) -> dict[str, Any]:
        """Every variable in scope at the pause, whole (what `evaluate` runs over)."""
        current = self._run.debugger.current
        return {} if current is None else self._run.debugger.variables(current)

    @workflow.query(name="debug_scope")
    def debug_scope(self) -> dict[str, Any]:
        """Every variable in scope at the pause, and the input the next step is about to receive."""
        current = self._run.debugger.current
        if current is None:
            return {}
        return {key: bounded(value) for key, value in self._run.debugger.variables(current).items()}

    # ---------------------------------------------------------------- recovery
    @workflow.update(name="decide_recovery")
    async def decide_recovery(self, decision: RecoveryDecision) -> ExecutionState:
        """retry (optionally with an edited input or timeout), skip (with a substitute output), fail."""
        path = self._run.debugger.resolve(decision.step)
        self._run.decisions[path] = decision
        return self.state()

    @decide_recovery.validator
    def _validate_recovery(self, decision: RecoveryDecision) -> None:
        self._require_open()
        path = self._run.debugger.resolve(decision.step)
        if path not in self._run.state.steps:
            raise rejected(f"unknown step '{decision.step}'")
        if path not in self._run.awaiting or path in self._run.decisions:
            waiting = ", ".join(sorted(self._run.awaiting)) or "none"
            status = self._run.state.steps[path].status.value
            raise rejected(
                f"step '{decision.step}' is not waiting for a decision (it is {status}; waiting: {waiting})"
            )

    def _require_open(self) -> None:
        if self._run.state.status != ExecutionStatus.RUNNING:
            raise rejected(f"the execution has ended ({self._run.state.status.value})")

    def _approval_key(self, decision: ApprovalDecision) -> str:
        path = decision.step
        if path not in self._run.state.steps:  # a bare step id: find its path
            path = next((p for p, s in self._run.state.steps.items() if s.id == decision.step), decision.step)
        return approval_key(path, decision.item_index)


def _failure_message(error: ErrorInfo) -> str:
    where = f"step '{error.step_path}'" if error.step_path else "the execution"
    item = f" (item {error.item_index})" if error.item_index is not None else ""
    return f"{where}{item} failed [{error.category}]: {error.message}"


__all__ = ["RunPlan", "ItemRecord"]
