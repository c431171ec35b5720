"""One error vocabulary for the whole engine.

Every failure a step, the compiler or the API can report carries a category (what kind of thing went
wrong), whether retrying may help, and where it came from. Activities turn an `EngineError` into a
Temporal `ApplicationError` whose `type` is the category, so retry policies and the interpreter can
reason about it; the API turns it into `application/problem+json`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCategory(StrEnum):
    TIMEOUT = "timeout"
    NETWORK = "network"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    AUTH = "auth"
    RATE_LIMIT = "rate_limit"
    VALIDATION = "validation"
    EXPRESSION = "expression"
    SANDBOX_LIMIT = "sandbox_limit"
    USER_CODE = "user_code"
    CANCELLED = "cancelled"
    CONFIGURATION = "configuration"
    RAISED = "raised"  # an error raised on purpose by the definition (SWF `raise`)
    REJECTED = "rejected"  # an approval step was rejected
    POLICY = "policy"  # refused by a security policy (outbound targets, where credentials may go)
    INTERNAL = "internal"


# Categories where a retry cannot change the outcome.
NON_RETRYABLE_CATEGORIES = frozenset(
    {
        ErrorCategory.HTTP_4XX,
        ErrorCategory.AUTH,
        ErrorCategory.VALIDATION,
        ErrorCategory.EXPRESSION,
        ErrorCategory.SANDBOX_LIMIT,
        ErrorCategory.CONFIGURATION,
        ErrorCategory.CANCELLED,
        ErrorCategory.RAISED,
        ErrorCategory.REJECTED,
        ErrorCategory.POLICY,
    }
)


class EngineError(Exception):
    """A failure with a category, a message a person can act on, and optional details."""

    def __init__(
        self,
        category: ErrorCategory,
        message: str,
        *,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.category = ErrorCategory(category)
        self.message = message
        self.retryable = retryable if retryable is not None else self.category not in NON_RETRYABLE_CATEGORIES
        self.details = details or {}
        self.retry_after_s = retry_after_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category.value,
            "message": self.message,
            "retryable": self.retryable,
            "details": self.details,
        }


class ExpressionError(EngineError):
    def __init__(self, message: str, *, expression: str | None = None) -> None:
        details = {"expression": expression} if expression else {}
        super().__init__(ErrorCategory.EXPRESSION, message, details=details)


def json_type_name(value: Any) -> str:
    """How error texts name a value's type: JSON's words (null, boolean, number, string, array,
    object), never Python's (`NoneType`, `dict`)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__  # not a JSON value at all: its Python type is the useful name
