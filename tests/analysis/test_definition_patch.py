"""The definition changes that `raise_timeout` and `lower_concurrency` answer (no server)."""

from __future__ import annotations

from typing import Any

from api.suggestion_actions import definition_patch

PLAN: dict[str, Any] = {"root": {"steps": [{"id": "fetch", "timeout_s": 30.0}, {"id": "send"}]}}


def test_raise_timeout_doubles_the_step_timeout_it_falls_back_to() -> None:
    document = {"steps": [{"id": "fetch", "kind": "python"}]}
    patch, why = definition_patch(document, PLAN, "wf/fetch", "raise_timeout")
    assert patch == [{"op": "add", "path": "/steps/0/timeout", "value": "60s", "old": None}]
    assert "60 s" in why


def test_raise_timeout_doubles_an_explicit_step_timeout() -> None:
    document = {"steps": [{"id": "x"}, {"id": "fetch", "kind": "ai", "timeout": "2m"}]}
    patch, _why = definition_patch(document, PLAN, "wf/fetch", "raise_timeout")
    assert patch == [{"op": "replace", "path": "/steps/1/timeout", "value": "240s", "old": "2m"}]


def test_lower_concurrency_halves_a_for_each_or_else_the_workflow() -> None:
    looped = {"steps": [{"id": "send", "for_each": {"items": [1], "concurrency": 10}}]}
    patch, _why = definition_patch(looped, PLAN, "wf/send", "lower_concurrency")
    assert patch == [{"op": "replace", "path": "/steps/0/for_each/concurrency", "value": 5, "old": 10}]
    plain = {"steps": [{"id": "send"}]}
    patch, _why = definition_patch(plain, PLAN, "wf/send", "lower_concurrency")
    assert patch == [{"op": "add", "path": "/max_concurrency", "value": 8, "old": None}]


def test_nothing_to_lower_or_no_such_step_answers_why_without_a_patch() -> None:
    single = {"steps": [{"id": "send", "for_each": {"items": [1], "concurrency": 1}}]}
    assert definition_patch(single, PLAN, "wf/send", "lower_concurrency") == (
        [],
        "'send' already runs one item at a time",
    )
    assert definition_patch(single, PLAN, "wf/gone", "raise_timeout")[0] == []
