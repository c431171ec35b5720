"""The claim-check helpers that need no store: what a reference is, finding one, refusing one."""

from __future__ import annotations

import json

import pytest

from rte.claim_check import (
    REF_KEY,
    ReferenceRefused,
    contains_reference,
    is_reference,
    reference_to,
    refuse_references,
    serialized_size,
)

BIG = {"rows": [{"n": index, "text": "x" * 1000} for index in range(5000)]}  # ~5 MB


def test_a_reference_is_small_and_a_pure_function_of_the_content() -> None:
    reference = reference_to(BIG)
    assert is_reference(reference)
    assert reference[REF_KEY] == reference_to(json.loads(json.dumps(BIG)))[REF_KEY]
    assert reference["bytes"] > 5_000_000 and reference["kind"] == "object"
    assert len(json.dumps(reference)) < 1024
    assert reference_to({"b": 1, "a": 2})[REF_KEY] == reference_to({"a": 2, "b": 1})[REF_KEY]
    kinds = [reference_to(value)["kind"] for value in ([1], "s", 1.5, True, None, {"a": 1})]
    assert kinds == ["array", "string", "number", "boolean", "null", "object"]


def test_only_the_exact_reference_shape_counts_as_one() -> None:
    reference = reference_to("some text")
    assert not is_reference({**reference, "extra": 1})  # a user object that merely uses the key
    assert not is_reference({REF_KEY: "not-a-digest", "bytes": 1, "kind": "string"})
    assert not is_reference({REF_KEY: reference[REF_KEY], "kind": "string"})  # no size
    assert not is_reference([reference])


def test_references_are_found_at_any_depth_and_only_there() -> None:
    reference = reference_to("some text")
    assert contains_reference({"a": [{"b": reference}]})
    assert contains_reference(reference)
    assert not contains_reference({"a": [{"b": "$rte_ref"}], REF_KEY: "x"})
    assert not contains_reference(BIG)
    assert not contains_reference("$rte_ref")


def test_references_given_from_outside_are_refused_with_their_path() -> None:
    refuse_references({"plain": {"$ref": "#/x"}}, "$.params")  # ordinary data passes
    with pytest.raises(ReferenceRefused) as refused:
        refuse_references({"a": [1, {"b": reference_to("text")}]}, "$.params")
    assert refused.value.violations[0]["path"] == "$.params.a[1].b"
    assert refused.value.category.value == "validation"
    assert "only the engine makes" in refused.value.message


def test_the_serialized_size_bounds_what_temporal_carries() -> None:
    assert serialized_size({"a": [1, 2]}) == len('{"a":[1,2]}')
    # Non-ASCII counts as its escaped form: never less than its UTF-8 bytes.
    assert serialized_size("é" * 10) >= len(json.dumps("é" * 10, ensure_ascii=False).encode())
