"""`approval`: wait (durably, optionally with a timeout) for a person's decision, given through the
`decide_approval` update. When the step names `approvers`, only they may decide (the update's
validator refuses anyone else: see `workflows/interpreter.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from rte.errors import ErrorCategory
    from workflows.durations import parse_duration
    from workflows.plan import PlanStep
    from workflows.run.failures import StepFailed, error
    from workflows.state import ApprovalRequest, StepState, StepStatus

if TYPE_CHECKING:
    from workflows.run.run import Run


async def run_approval(
    run: Run, step: PlanStep, scope: dict[str, Any], item: int | None, state: StepState | None
) -> Any:
    params = await run.template_or_fail(step, step.with_, scope)
    timeout_s = parse_duration(params["timeout"]) if params.get("timeout") else None
    key = approval_key(step.path, item)
    request = ApprovalRequest(
        message=params.get("message"),
        approvers=[str(approver) for approver in params.get("approvers") or []],
        requested_at=workflow.now(),
        timeout_s=timeout_s,
    )
    run.waiting_approvals[key] = request
    if state is not None:
        state.status, state.approval = StepStatus.WAITING, request
    try:
        await workflow.wait_condition(lambda: key in run.approvals, timeout=timeout_s)
    except TimeoutError:
        raise StepFailed(
            error(ErrorCategory.TIMEOUT, f"no decision within {timeout_s:g} s", step_path=step.path)
        ) from None
    finally:
        run.waiting_approvals.pop(key, None)
        if state is not None and state.status == StepStatus.WAITING:
            state.status = StepStatus.RUNNING
    decision = run.approvals[key]
    output = {
        "approved": decision.approved,
        "by": decision.by,
        "comment": decision.comment,
        "payload": decision.payload,
        "decided_at": workflow.now().isoformat(),
    }
    if not decision.approved:
        raise StepFailed(
            error(
                ErrorCategory.REJECTED,
                f"rejected by {decision.by}" + (f": {decision.comment}" if decision.comment else ""),
                details=output,
            )
        )
    return output


def approval_key(step_path: str, item_index: int | None) -> str:
    """How an approval (and an operator's input override) is keyed: the step path, with the item."""
    return step_path if item_index is None else f"{step_path}[{item_index}]"
