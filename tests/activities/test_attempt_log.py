"""The worker log: an expected failed attempt is one line with its category; an engine bug keeps a
traceback."""

from __future__ import annotations

import logging

import pytest
from temporalio.exceptions import ApplicationError

from activities import attempt_log
from tests.conftest import Engine
from tests.support.http_server import Reply, TestServer

FAILED = "Completing activity as failed"


def _failed_attempts(caplog: pytest.LogCaptureFixture, execution_id: str) -> list[logging.LogRecord]:
    """This execution's failed-attempt lines (other tests' workers may still be logging)."""
    return [
        r
        for r in caplog.records
        if r.name == "temporalio.activity"
        and FAILED in r.getMessage()
        and f"'workflow_id': '{execution_id}'" in r.getMessage()
    ]


async def test_expected_step_failures_log_one_line_with_their_category(
    engine: Engine, http_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="temporalio.activity")
    http_server.route("GET", "/missing", Reply(404, {"error": "nope"}))
    http_server.route("POST", "/flaky", Reply(503, {"error": "busy"}), Reply(200, {"ok": True}))
    ok, _, state = await engine.run(
        f"""
id: expected-failures
steps:
  - id: missing
    kind: http
    with: {{url: "{http_server.url}/missing"}}
    on_error: continue
  - id: flaky
    kind: http
    with: {{method: POST, url: "{http_server.url}/flaky"}}
    retry: {{max_attempts: 3, initial_interval: 100ms}}
  - id: refused
    kind: python
    with: {{function: fail_on, args: {{value: 2, bad: [2]}}}}
    on_error: continue
"""
    )
    assert ok, state
    records = _failed_attempts(caplog, state.execution_id)
    by_category = {
        category: [r for r in records if f"{FAILED} [{category}]:" in r.getMessage()]
        for category in ("http_4xx", "http_5xx", "user_code")
    }
    counts = {category: len(found) for category, found in by_category.items()}
    # One line per failed attempt: a 404 is not retried, the 503 once, the user's function 3 times.
    assert counts == {"http_4xx": 1, "http_5xx": 1, "user_code": 3}, [r.getMessage() for r in records]
    assert len(records) == 5
    assert f"GET {http_server.url}/missing answered 404 Not Found" in by_category["http_4xx"][0].getMessage()
    assert (
        "function 'fail_on' raised ValueError: value 2 is not allowed"
        in by_category["user_code"][0].getMessage()
    )
    assert (
        "'activity_type': 'rte.http'" in by_category["http_4xx"][0].getMessage()
    )  # temporalio's details kept
    for record in records:
        assert record.exc_info is None and record.exc_text is None, record.getMessage()
        assert "\n" not in logging.Formatter().format(record)  # one line, no traceback


def _logged(error: BaseException) -> logging.LogRecord:
    """A record exactly as temporalio's activity worker writes it: a warning with exc_info."""
    logger = logging.getLogger("temporalio.activity")
    attempt_log.install()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    try:
        try:
            raise error
        except BaseException:
            logger.warning(f"{FAILED} ({{'activity_type': 'rte.python'}})", exc_info=True)
    finally:
        logger.removeHandler(handler)
    (record,) = records
    return record


def test_an_engine_bug_keeps_the_handlers_traceback() -> None:
    handler_traceback = (
        "Traceback (most recent call last):\n  File \"activities/python_fn.py\", line 9\nKeyError: 'x'"
    )
    bug = ApplicationError(
        "KeyError: 'x'",
        {"category": "internal", "details": {"traceback": handler_traceback}},
        type="internal",
    )
    text = logging.Formatter().format(_logged(bug))
    assert text.startswith(f"{FAILED} [internal]: KeyError: 'x' ({{'activity_type': 'rte.python'}})")
    assert text.endswith(handler_traceback)


def test_failures_that_are_not_step_errors_keep_temporalios_traceback() -> None:
    for error in (RuntimeError("boom"), ApplicationError("odd", type="SomethingElse")):
        record = _logged(error)
        assert record.exc_info is not None and record.exc_info[1] is error
        assert "Traceback" in logging.Formatter().format(record)


def test_installing_twice_adds_one_filter() -> None:
    attempt_log.install()
    attempt_log.install()
    filters = logging.getLogger("temporalio.activity").filters
    assert sum(isinstance(f, attempt_log.OneLineForExpectedFailures) for f in filters) == 1
