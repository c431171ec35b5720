from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rte.errors import EngineError, ErrorCategory
from rte.store import Store

STARTED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _metric(step_path: str, status: str = "completed", **fields: object) -> dict[str, object]:
    base = {"execution_id": "exec-1", "run_id": "run-1", "definition_id": "orders", "kind": "http"}
    return {
        **base,
        "step_path": step_path,
        "status": status,
        "started_at": STARTED,
        "duration_ms": 10.0,
        **fields,
    }


async def test_a_metric_reads_back_with_every_field(store: Store) -> None:
    metric_id = await store.metrics.add(
        _metric(
            "ask",
            kind="ai",
            item_index=3,
            attempt=2,
            duration_ms=1234.5,
            bytes_in=10,
            bytes_out=5_000_000_000,
            tokens_prompt=100,
            tokens_completion=20,
            http_status=200,
        )
    )
    [row] = await store.metrics.for_execution("exec-1")
    assert row.id == metric_id
    assert (row.step_path, row.kind, row.item_index, row.attempt, row.status) == (
        "ask",
        "ai",
        3,
        2,
        "completed",
    )
    assert (row.duration_ms, row.bytes_in, row.bytes_out) == (1234.5, 10, 5_000_000_000)
    assert (row.tokens_prompt, row.tokens_completion, row.http_status, row.error_category) == (
        100,
        20,
        200,
        None,
    )
    assert row.started_at == STARTED


async def test_summary_counts_attempts_failures_duration_and_tokens(store: Store) -> None:
    await store.metrics.add(_metric("fetch", duration_ms=100.0, http_status=200))
    await store.metrics.add(
        _metric("ask", kind="ai", duration_ms=250.5, tokens_prompt=40, tokens_completion=10)
    )
    await store.metrics.add(_metric("ask", kind="ai", duration_ms=49.5, tokens_prompt=2))
    await store.metrics.add(
        _metric("post", "failed", duration_ms=5.0, http_status=503, error_category="http_5xx")
    )
    await store.metrics.add(_metric("other", execution_id="exec-2", duration_ms=999.0, tokens_prompt=999))

    summary = await store.metrics.summary("exec-1")
    assert (summary.count, summary.failures) == (4, 1)
    assert summary.total_duration_ms == pytest.approx(405.0)
    assert (summary.tokens_prompt, summary.tokens_completion, summary.tokens_total) == (42, 10, 52)
    assert [row.step_path for row in await store.metrics.for_execution("exec-1")] == [
        "fetch",
        "ask",
        "ask",
        "post",
    ]


async def test_summary_of_an_execution_without_metrics_is_all_zero(store: Store) -> None:
    summary = await store.metrics.summary("nothing")
    assert (summary.count, summary.failures, summary.total_duration_ms, summary.tokens_total) == (
        0,
        0,
        0.0,
        0,
    )
    assert await store.metrics.for_execution("nothing") == []


async def test_an_invalid_metric_is_rejected(store: Store) -> None:
    with pytest.raises(EngineError) as caught:
        await store.metrics.add(_metric("fetch", status="exploded"))
    assert caught.value.category is ErrorCategory.VALIDATION
    assert await store.metrics.for_execution("exec-1") == []
