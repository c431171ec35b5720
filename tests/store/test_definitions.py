from __future__ import annotations

import asyncio

import pytest

from rte.errors import EngineError, ErrorCategory
from rte.store import Store


async def _save(store: Store, plan_hash: str, *, id: str = "orders", source: str = "steps: []") -> str:
    return await store.definitions.save(
        id, "Orders", "Sync orders", "native", source, {"steps": [plan_hash]}, plan_hash
    )


async def test_the_first_save_is_version_1_and_reads_back(store: Store) -> None:
    assert await _save(store, "h1") == "1"
    row = await store.definitions.get("orders")
    assert row is not None
    assert (row.id, row.version, row.name, row.description, row.format) == (
        "orders",
        "1",
        "Orders",
        "Sync orders",
        "native",
    )
    assert row.plan == {"steps": ["h1"]}
    assert row.plan_hash == "h1"
    assert row.source == "steps: []"
    assert row.created_at.tzinfo is not None


async def test_saving_the_same_plan_again_keeps_the_version(store: Store) -> None:
    assert await _save(store, "h1") == "1"
    assert await _save(store, "h1", source="steps: []  # reformatted") == "1"
    assert [row.version for row in await store.definitions.list_versions("orders")] == ["1"]


async def test_a_changed_plan_is_a_new_version_and_the_old_one_stays_readable(store: Store) -> None:
    assert await _save(store, "h1") == "1"
    assert await _save(store, "h2") == "2"
    latest = await store.definitions.get("orders")
    old = await store.definitions.get("orders", "1")
    assert latest is not None and latest.version == "2" and latest.plan == {"steps": ["h2"]}
    assert old is not None and old.plan == {"steps": ["h1"]}
    # Going back to an earlier plan is still a change from the latest one.
    assert await _save(store, "h1") == "3"
    assert [row.version for row in await store.definitions.list_versions("orders")] == ["1", "2", "3"]


async def test_versions_order_as_numbers_past_nine(store: Store) -> None:
    for number in range(1, 12):
        assert await _save(store, f"h{number}") == str(number)
    latest = await store.definitions.get("orders")
    assert latest is not None and latest.version == "11"
    versions = [row.version for row in await store.definitions.list_versions("orders")]
    assert versions == [str(number) for number in range(1, 12)]


async def test_concurrent_saves_of_different_plans_get_distinct_versions(store: Store) -> None:
    versions = await asyncio.gather(*(_save(store, f"h{number}") for number in range(4)))
    assert sorted(versions, key=int) == ["1", "2", "3", "4"]


async def test_list_latest_shows_each_definition_once_at_its_latest_version(store: Store) -> None:
    await _save(store, "h1", id="b")
    await _save(store, "h2", id="b")
    await _save(store, "h1", id="a")
    latest = await store.definitions.list_latest()
    assert [(row.id, row.version) for row in latest] == [("a", "1"), ("b", "2")]


async def test_unknown_ids_and_versions_read_as_none(store: Store) -> None:
    await _save(store, "h1")
    assert await store.definitions.get("missing") is None
    assert await store.definitions.get("orders", "7") is None
    assert await store.definitions.list_versions("missing") == []


async def test_delete_removes_every_version(store: Store) -> None:
    await _save(store, "h1")
    await _save(store, "h2")
    await _save(store, "h1", id="other")
    assert await store.definitions.delete("orders") is True
    assert await store.definitions.get("orders") is None
    assert await store.definitions.list_versions("orders") == []
    assert [row.id for row in await store.definitions.list_latest()] == ["other"]
    assert await store.definitions.delete("orders") is False


async def test_an_unknown_format_is_rejected(store: Store) -> None:
    with pytest.raises(EngineError) as caught:
        await store.definitions.save("x", "X", "", "bpmn", "", {}, "h")  # type: ignore[arg-type]
    assert caught.value.category is ErrorCategory.VALIDATION
    assert "native or swf" in caught.value.message
