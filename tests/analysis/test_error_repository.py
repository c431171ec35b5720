"""The failure queries over `step_metrics` (SQLite here; tests/store checks the schema on PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from api.failure_sources import from_attempt
from rte import analysis
from rte.store import Store

NOW = datetime.now(UTC).replace(microsecond=0)


def attempt(
    workflow: str, execution: str, at: datetime, status: str = "failed", **extra: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "execution_id": execution,
        "definition_id": workflow,
        "step_path": f"{workflow}/call",
        "kind": "http",
        "attempt": 1,
        "status": status,
        "started_at": at,
        "duration_ms": 5.0,
    }
    if status == "failed":
        row |= {
            "error_category": "http_5xx",
            "error_message": "GET http://svc/x answered 503 Service Unavailable",
            "error_fingerprint": "00112233aabbccdd",
            "error_retryable": True,
            "error_details": {"body_excerpt": "busy"},
            "host": "svc",
        }
    return row | extra


async def test_failures_filter_by_window_workflow_and_fingerprint_newest_first(store: Store) -> None:
    workflow = f"repo-{uuid.uuid4().hex[:8]}"
    await store.metrics.add_many(
        [
            attempt(workflow, "e1", NOW - timedelta(hours=30)),
            attempt(workflow, "e2", NOW - timedelta(hours=2)),
            attempt(workflow, "e3", NOW - timedelta(minutes=1)),
            attempt(workflow, "e3", NOW, status="completed", attempt=2),
        ]
    )
    found = await store.errors.failures(since=NOW - timedelta(hours=24), definition_id=workflow)
    assert [row.execution_id for row in found] == ["e3", "e2"]
    assert found[0].error_details == {"body_excerpt": "busy"} and found[0].host == "svc"
    assert found[0].started_at.tzinfo is not None
    assert len(await store.errors.failures(definition_id=workflow, fingerprint="00112233aabbccdd")) == 3
    assert await store.errors.failures(definition_id=workflow, category="auth") == []


async def test_successes_tell_retries_in_the_same_execution_from_first_attempts_elsewhere(
    store: Store,
) -> None:
    workflow = f"repo-{uuid.uuid4().hex[:8]}"
    step = f"{workflow}/call"
    await store.metrics.add_many(
        [
            attempt(workflow, "a", NOW - timedelta(minutes=3)),
            attempt(workflow, "a", NOW - timedelta(minutes=2), status="completed", attempt=2),
            attempt(workflow, "b", NOW - timedelta(minutes=1), status="completed"),
        ]
    )
    history = await store.errors.successes([(workflow, step)], ["a"])
    assert history.same_execution == {("a", step, None): NOW - timedelta(minutes=2)}
    assert history.first_attempt == {(workflow, step): NOW - timedelta(minutes=1)}


async def test_attempts_recorded_before_the_analysis_columns_still_get_a_fingerprint(store: Store) -> None:
    workflow = f"repo-{uuid.uuid4().hex[:8]}"
    old = attempt(workflow, "old", NOW) | {
        "error_message": None,
        "error_fingerprint": None,
        "error_retryable": None,
        "error_details": None,
        "host": None,
        "error_category": "rate_limit",
    }
    await store.metrics.add_many([old])
    (row,) = await store.errors.failures(definition_id=workflow)
    failure = from_attempt(row)
    assert failure.retryable and failure.category == "rate_limit"
    assert failure.fingerprint == analysis.fingerprint("http", "rate_limit", None, failure.message)
