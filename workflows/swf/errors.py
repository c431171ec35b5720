"""The Serverless Workflow error object (RFC 7807 problem details) and the engine's errors.

A failed task carries an `ErrorInfo` (the engine's vocabulary: category, message, details); in a
Serverless Workflow plan its `details["problem"]` holds the spec's error object — `type`, `status`,
`title`, `detail`, `instance` — which `catch` filters match and `$error` variables expose. Errors the
engine raises (an HTTP 404, an expression that fails, a timeout) get the spec's standard types.
"""

from __future__ import annotations

from typing import Any

from rte.errors import ErrorCategory
from workflows.state import ErrorInfo

STANDARD_TYPE_BASE = "https://serverlessworkflow.io/spec/1.0.0/errors/"
PROBLEM = "problem"  # the key of the error object in ErrorInfo.details

# Standard error types: status and title.
STANDARD: dict[str, tuple[int, str]] = {
    "configuration": (400, "Configuration Error"),
    "validation": (400, "Validation Error"),
    "expression": (400, "Expression Error"),
    "authentication": (401, "Authentication Error"),
    "authorization": (403, "Authorization Error"),
    "timeout": (408, "Timeout"),
    "communication": (500, "Communication Error"),
    "runtime": (500, "Runtime Error"),
}

_BY_CATEGORY: dict[str, str] = {
    ErrorCategory.TIMEOUT: "timeout",
    ErrorCategory.NETWORK: "communication",
    ErrorCategory.HTTP_4XX: "communication",
    ErrorCategory.HTTP_5XX: "communication",
    ErrorCategory.AUTH: "communication",
    ErrorCategory.RATE_LIMIT: "communication",
    ErrorCategory.VALIDATION: "validation",
    ErrorCategory.EXPRESSION: "expression",
    ErrorCategory.CONFIGURATION: "configuration",
}


def standard_type(name: str) -> str:
    return STANDARD_TYPE_BASE + name


def problem_of(error: ErrorInfo, instance: str) -> dict[str, Any]:
    """The spec's error object for an engine error; the one it already carries, if any."""
    carried = error.details.get(PROBLEM)
    if isinstance(carried, dict):
        return carried
    name = _BY_CATEGORY.get(error.category, "runtime")
    status, title = STANDARD[name]
    http_status = error.details.get("status")
    if name == "communication" and isinstance(http_status, int):
        status = http_status
    elif name == "communication" and error.category == ErrorCategory.NETWORK:
        status = 503
    return {
        "type": standard_type(name),
        "status": status,
        "title": title,
        "detail": error.message,
        "instance": instance,
    }


def with_problem(error: ErrorInfo, instance: str) -> ErrorInfo:
    """The error with its spec error object attached (the innermost task that failed sets it)."""
    if isinstance(error.details.get(PROBLEM), dict):
        return error
    return error.model_copy(update={"details": {**error.details, PROBLEM: problem_of(error, instance)}})


def raised(problem: dict[str, Any], step_path: str) -> ErrorInfo:
    """The engine error for a `raise` task."""
    title = problem.get("title") or problem.get("type")
    message = f"{title}: {problem['detail']}" if problem.get("detail") else str(title)
    return ErrorInfo(
        category=ErrorCategory.RAISED, message=message, step_path=step_path, details={PROBLEM: problem}
    )


def engine_error(name: str, message: str, step_path: str | None = None) -> ErrorInfo:
    """An error the flow itself raises (a timeout, an invalid value), with its standard type."""
    category = {
        "timeout": ErrorCategory.TIMEOUT,
        "validation": ErrorCategory.VALIDATION,
        "expression": ErrorCategory.EXPRESSION,
        "configuration": ErrorCategory.CONFIGURATION,
    }.get(name, ErrorCategory.INTERNAL)
    return ErrorInfo(category=category, message=message, step_path=step_path)


def matches_filter(problem: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """`catch.errors.with`: every given field equals the error's (types compare as below)."""
    for key, value in wanted.items():
        actual = problem.get("detail" if key == "details" else key)
        if key == "type":
            if not same_type(str(actual or ""), str(value)):
                return False
        elif actual != value:
            return False
    return True


def same_type(actual: str, wanted: str) -> bool:
    """Equal types; or two spellings of one standard type (`…/spec/1.0.0/errors/communication` and
    `…/dsl/errors/types/communication` both occur in the spec's own material)."""
    if actual == wanted:
        return True
    return _standard_name(actual) is not None and _standard_name(actual) == _standard_name(wanted)


def _standard_name(type_uri: str) -> str | None:
    if "serverlessworkflow.io/" not in type_uri:
        return None
    name = type_uri.rstrip("/").rsplit("/", 1)[-1]
    return name if name in STANDARD else None
