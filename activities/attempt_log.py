"""The worker log line for a failed step attempt: one line for an expected failure, a traceback for
an engine bug.

temporalio logs every failed activity as the warning "Completing activity as failed" with the
exception's traceback. For a step that failed the way steps fail — a 4xx/5xx answer, a timeout,
invalid parameters, a refused target, the user's own code raising — that traceback only shows the
engine's wrapper raising the `ApplicationError` it was meant to raise, dozens of lines per attempt.
This filter turns such a record into one line with the category and message (already redacted by the
wrapper). An `internal` error (an unexpected exception in a handler: an engine bug) keeps a
traceback — the handler's own, which the wrapper recorded, rather than the wrapper's — and anything
that is not an `ApplicationError` is left untouched.
"""

from __future__ import annotations

import logging
from typing import Any

from temporalio.exceptions import ApplicationError

from rte.errors import ErrorCategory

TEMPORAL_ACTIVITY_LOGGER = "temporalio.activity"
_FAILED = "Completing activity as failed"
_CATEGORIES = frozenset(category.value for category in ErrorCategory)


class OneLineForExpectedFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, ApplicationError) or error.type not in _CATEGORIES:
            return True
        handler_traceback = _handler_traceback(error) if error.type == ErrorCategory.INTERNAL else None
        if error.type == ErrorCategory.INTERNAL and handler_traceback is None:
            return True  # an engine bug without a recorded traceback: keep temporalio's
        message = record.getMessage()
        if message.startswith(_FAILED):
            # temporalio's adapter appends the activity's details after the text: keep them.
            message = f"{_FAILED} [{error.type}]: {error.message}{message[len(_FAILED) :]}"
        record.msg, record.args = message, ()
        record.exc_info, record.exc_text = None, handler_traceback
        return True


def _handler_traceback(error: ApplicationError) -> str | None:
    """The traceback the step wrapper recorded for an unexpected exception (already redacted)."""
    first: Any = error.details[0] if error.details else None
    details = first.get("details") if isinstance(first, dict) else None
    found = details.get("traceback") if isinstance(details, dict) else None
    return found.rstrip() if isinstance(found, str) and found else None


def install() -> None:
    """Add the filter to temporalio's activity logger (once, whoever calls)."""
    logger = logging.getLogger(TEMPORAL_ACTIVITY_LOGGER)
    if not any(isinstance(existing, OneLineForExpectedFailures) for existing in logger.filters):
        logger.addFilter(OneLineForExpectedFailures())
