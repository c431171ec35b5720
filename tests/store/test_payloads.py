"""The payload store and the claim check over it, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select

from rte.claim_check import (
    REF_KEY,
    PayloadNotFound,
    canonical_json,
    is_reference,
    offload,
    offload_model,
    reference_to,
    resolve,
    serialized_size,
)
from rte.errors import EngineError
from rte.store import Store
from rte.store.tables import Payload

THRESHOLD = 128 * 1024
FIVE_MB = "0123456789abcdef" * (5 * 1024 * 1024 // 16)


async def rows(store: Store) -> int:
    async with store.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Payload)) or 0)


async def test_a_payload_is_stored_once_under_its_digest_and_read_back(store: Store) -> None:
    data = json.dumps(FIVE_MB).encode()
    key = hashlib.sha256(data).hexdigest()
    await store.payloads.put(key, data)
    await store.payloads.put(key, data)  # the same content again: nothing new
    assert await rows(store) == 1
    assert await store.payloads.get(key) == data
    assert await store.payloads.size(key) == len(data)


async def test_a_missing_payload_and_a_wrong_key_are_clear_errors(store: Store) -> None:
    with pytest.raises(PayloadNotFound, match="is not in the payload store"):
        await store.payloads.get("0" * 64)
    with pytest.raises(EngineError, match="is not the SHA-256 of its data"):
        await store.payloads.put("0" * 64, b"{}")
    assert await rows(store) == 0


async def test_small_values_pass_unchanged_and_store_nothing(store: Store) -> None:
    value = {"name": "x", "list": list(range(100))}
    assert await offload(value, store.payloads, THRESHOLD) is value
    assert await resolve(value, store.payloads) is value
    assert await rows(store) == 0


async def test_only_the_large_subtree_becomes_a_reference_and_resolves_back(store: Store) -> None:
    value = {"name": "x", "meta": {"owner": "ada"}, "big": {"note": "kept", "blob": FIVE_MB}}
    offloaded = await offload(value, store.payloads, THRESHOLD)
    assert offloaded["name"] == "x" and offloaded["meta"] == {"owner": "ada"}
    assert offloaded["big"]["note"] == "kept"  # the deepest useful split: only the blob goes
    assert is_reference(offloaded["big"]["blob"])
    assert offloaded["big"]["blob"]["bytes"] == len(canonical_json(FIVE_MB))
    assert serialized_size(offloaded) < 1024
    assert value["big"]["blob"] == FIVE_MB  # the input is not modified
    assert await resolve(offloaded, store.payloads) == value
    assert await rows(store) == 1


async def test_a_value_of_many_small_parts_becomes_one_reference(store: Store) -> None:
    rows_value = [{"n": index, "text": "x" * 1000} for index in range(5000)]
    offloaded = await offload({"rows": rows_value, "count": 5000}, store.payloads, THRESHOLD)
    assert offloaded["count"] == 5000 and is_reference(offloaded["rows"])
    assert await resolve(offloaded, store.payloads) == {"rows": rows_value, "count": 5000}
    whole = await offload(rows_value, store.payloads, THRESHOLD)
    assert is_reference(whole) and whole[REF_KEY] == offloaded["rows"][REF_KEY]
    assert await rows(store) == 1  # content-addressed: the same rows are one row


async def test_several_large_parts_each_fit_under_the_threshold_together(store: Store) -> None:
    value = {f"part{index}": "y" * 100_000 + str(index) for index in range(6)}  # 600 KB of 100 KB parts
    offloaded = await offload(value, store.payloads, THRESHOLD)
    assert serialized_size(offloaded) < THRESHOLD
    assert sum(is_reference(part) for part in offloaded.values()) == 5  # one may stay inline
    assert await resolve(offloaded, store.payloads) == value


async def test_keep_root_keeps_the_keys_and_the_length(store: Store) -> None:
    many = {f"key{index}": "v" * 2000 for index in range(200)}  # 400 KB of small properties
    offloaded = await offload(many, store.payloads, THRESHOLD, keep_root=True)
    assert set(offloaded) == set(many) and serialized_size(offloaded) < THRESHOLD
    assert await resolve(offloaded, store.payloads) == many
    outputs = [{"n": index, "text": "z" * 5000} for index in range(100)]  # 500 KB of batch outputs
    kept = await offload(outputs, store.payloads, THRESHOLD, keep_root=True)
    assert len(kept) == 100 and serialized_size(kept) < THRESHOLD
    assert await resolve(kept, store.payloads) == outputs


async def test_references_inside_stored_content_resolve_too(store: Store) -> None:
    inner = await offload({"blob": FIVE_MB}, store.payloads, THRESHOLD)
    outer = await offload({"wrapped": [inner] * 3, "pad": "p" * 200_000}, store.payloads, THRESHOLD)
    assert await resolve(outer, store.payloads) == {"wrapped": [{"blob": FIVE_MB}] * 3, "pad": "p" * 200_000}


async def test_resolving_a_reference_whose_content_is_gone_names_it(store: Store) -> None:
    reference = reference_to({"gone": True})
    with pytest.raises(PayloadNotFound) as missing:
        await resolve({"a": reference}, store.payloads)
    assert missing.value.key == reference[REF_KEY]


class _Message(BaseModel):
    note: str = ""
    payload: Any = None


async def test_a_message_keeps_its_fields_and_sends_large_values_by_reference(store: Store) -> None:
    small = _Message(note="hi", payload={"a": 1})
    assert await offload_model(small, store.payloads, THRESHOLD) is small
    large = await offload_model(_Message(note="hi", payload=[FIVE_MB]), store.payloads, THRESHOLD)
    assert large.note == "hi" and is_reference(large.payload[0])
    assert await resolve(large.payload, store.payloads) == [FIVE_MB]
    with pytest.raises(EngineError, match="note: too large"):
        await offload_model(_Message(note=FIVE_MB), store.payloads, THRESHOLD)
