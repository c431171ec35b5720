from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from rte.errors import EngineError, ErrorCategory
from rte.store import Store

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _entry(message: str, **fields: object) -> dict[str, object]:
    base = {
        "execution_id": "exec-1",
        "run_id": "run-1",
        "step_path": "fetch",
        "level": "info",
        "source": "http",
    }
    return {**base, "message": message, **fields}


@pytest.fixture
async def logged(store: Store) -> Store:
    """Eight lines for exec-1 (one per minute from T0) and one for another execution."""
    await store.logs.add_many(
        [
            _entry("starting", level="debug", timestamp=T0),
            _entry("GET https://example.com/orders", timestamp=T0 + timedelta(minutes=1)),
            _entry("Retrying after 503", level="warning", timestamp=T0 + timedelta(minutes=2)),
            _entry("request failed", level="error", timestamp=T0 + timedelta(minutes=3)),
            _entry("item done", step_path="each/0", item_index=0, timestamp=T0 + timedelta(minutes=4)),
            _entry("item done", step_path="each/1", item_index=1, timestamp=T0 + timedelta(minutes=5)),
            _entry("print: 100% done_ok", source="script", timestamp=T0 + timedelta(minutes=6)),
            _entry("print: 100 percent", source="script", attempt=2, timestamp=T0 + timedelta(minutes=7)),
            {"execution_id": "exec-2", "level": "error", "message": "request failed elsewhere"},
        ]
    )
    return store


def _messages(rows: list) -> list[str]:
    return [row.message for row in rows]


async def test_add_many_writes_every_field_and_reads_back_in_order(logged: Store) -> None:
    rows = await logged.logs.query("exec-1")
    assert len(rows) == 8
    assert [row.id for row in rows] == sorted(row.id for row in rows)
    first = rows[0]
    assert (first.execution_id, first.run_id, first.step_path, first.level, first.source) == (
        "exec-1",
        "run-1",
        "fetch",
        "debug",
        "http",
    )
    assert first.timestamp == T0 and first.timestamp.tzinfo is not None
    assert rows[4].item_index == 0 and rows[7].attempt == 2


async def test_min_level_keeps_that_level_and_above(logged: Store) -> None:
    assert _messages(await logged.logs.query("exec-1", min_level="warning")) == [
        "Retrying after 503",
        "request failed",
    ]
    assert len(await logged.logs.query("exec-1", min_level="info")) == 7
    assert len(await logged.logs.query("exec-1", min_level="debug")) == 8
    assert _messages(await logged.logs.query("exec-1", min_level="error")) == ["request failed"]


async def test_filter_by_source(logged: Store) -> None:
    assert _messages(await logged.logs.query("exec-1", source="script")) == [
        "print: 100% done_ok",
        "print: 100 percent",
    ]


async def test_text_is_a_case_insensitive_substring_with_wildcards_taken_literally(logged: Store) -> None:
    assert _messages(await logged.logs.query("exec-1", text="RETRYING")) == ["Retrying after 503"]
    assert _messages(await logged.logs.query("exec-1", text="100%")) == ["print: 100% done_ok"]
    assert _messages(await logged.logs.query("exec-1", text="done_ok")) == ["print: 100% done_ok"]
    assert await logged.logs.query("exec-1", text="d_ne") == []


async def test_time_window_since_inclusive_until_exclusive(logged: Store) -> None:
    rows = await logged.logs.query("exec-1", since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))
    assert _messages(rows) == ["Retrying after 503", "request failed"]
    # The same instant written in another zone selects the same lines.
    paris = timezone(timedelta(hours=1))
    since = datetime(2025, 3, 1, 13, 2, tzinfo=paris)
    rows = await logged.logs.query("exec-1", since=since, until=since + timedelta(minutes=1))
    assert _messages(rows) == ["Retrying after 503"]


async def test_filter_by_step_path(logged: Store) -> None:
    rows = await logged.logs.query("exec-1", step_path="each/1")
    assert [(row.message, row.item_index) for row in rows] == [("item done", 1)]


async def test_pages_follow_after_id_without_gaps_or_repeats(logged: Store) -> None:
    seen: list[str] = []
    after_id: int | None = None
    while page := await logged.logs.query("exec-1", after_id=after_id, limit=3):
        assert len(page) <= 3
        seen += _messages(page)
        after_id = page[-1].id
    assert seen == _messages(await logged.logs.query("exec-1"))
    assert len(seen) == 8


async def test_filters_combine(logged: Store) -> None:
    rows = await logged.logs.query("exec-1", min_level="info", source="http", text="item", step_path="each/0")
    assert _messages(rows) == ["item done"]


async def test_other_executions_logs_never_leak_in(logged: Store) -> None:
    assert _messages(await logged.logs.query("exec-2")) == ["request failed elsewhere"]
    assert await logged.logs.query("exec-3") == []


async def test_an_invalid_entry_rejects_the_whole_batch(store: Store) -> None:
    with pytest.raises(EngineError) as caught:
        await store.logs.add_many([_entry("fine"), _entry("bad", level="loud")])
    assert caught.value.category is ErrorCategory.VALIDATION
    assert await store.logs.query("exec-1") == []


async def test_an_unknown_min_level_is_a_clear_error(store: Store) -> None:
    with pytest.raises(EngineError, match="unknown log level 'fatal'"):
        await store.logs.query("exec-1", min_level="fatal")  # type: ignore[arg-type]
