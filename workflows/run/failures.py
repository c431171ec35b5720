"""How a step fails: `StepFailed` carries the `ErrorInfo` up through the run; activity failures are
mapped to the same shape (category, message, retryable, attempts)."""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

with workflow.unsafe.imports_passed_through():
    from rte.errors import ErrorCategory
    from workflows.plan import PlanStep
    from workflows.state import ErrorInfo


class StepFailed(Exception):
    def __init__(self, error: ErrorInfo, decided: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.decided = decided  # an operator already chose to fail it: do not pause again


def error(category: ErrorCategory | str, message: str, **fields: Any) -> ErrorInfo:
    return ErrorInfo(category=str(category), message=message, **fields)


def activity_error(failure: Exception, step: PlanStep, item_index: int | None) -> ErrorInfo:
    """The error an activity's failure (regular or local, wrapped or not) means for its step."""
    cause = failure.cause if isinstance(failure, ActivityError) else failure
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
        return error(
            cause.type or ErrorCategory.INTERNAL,
            cause.message,
            retryable=not cause.non_retryable,
            step_path=step.path,
            item_index=item_index,
            attempts=details.get("attempt"),
            details=details.get("details") or {},
        )
    if isinstance(cause, TemporalTimeoutError):
        limit = f" of {step.timeout_s:g} s" if step.timeout_s else ""
        return error(
            ErrorCategory.TIMEOUT,
            f"step '{step.id}' ran past its timeout{limit}",
            retryable=True,
            step_path=step.path,
            item_index=item_index,
        )
    return error(ErrorCategory.INTERNAL, str(cause or failure), step_path=step.path, item_index=item_index)
