"""The activity wrapper's claim check: references in a step's params are resolved before its
handler runs, and an output over the threshold (or the interpreter's per-item budget) leaves as a
reference. Real handlers (a registered python function) on the real SQLite store."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import tests.support.functions  # noqa: F401 - registers `blob` and `measure`
from activities.base import StepRequest
from activities.runtime import StepActivities
from rte.claim_check import REF_KEY, is_reference, offload, reference_to, resolve
from rte.store import Store
from tests.activities.conftest import MemoryConnections

THRESHOLD = 128 * 1024


def request(function: str, args: dict[str, Any], **fields: Any) -> StepRequest:
    return StepRequest(
        execution_id="claim-check", step_path="flow/step", kind="python",
        params={"function": function, "args": args}, **fields,
    )  # fmt: skip


def steps(store: Store) -> StepActivities:
    return StepActivities(MemoryConnections(), payloads=store.payloads, offload_bytes=THRESHOLD)


async def test_a_reference_in_params_reaches_the_handler_as_its_content(store: Store) -> None:
    document = {"rows": ["r" * 1000 for _ in range(1000)]}
    params = await offload({"value": document}, store.payloads, THRESHOLD)
    assert is_reference(params["value"]["rows"])
    outcome = await steps(store)._attempt(request("measure", params), 1)
    data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    assert outcome.error is None
    assert outcome.output["sha256"] == hashlib.sha256(data).hexdigest()


async def test_an_output_over_the_threshold_leaves_as_a_reference(store: Store) -> None:
    outcome = await steps(store)._attempt(request("blob", {"size": 300_000}), 1)
    assert outcome.error is None
    assert outcome.output["name"] == "blob" and is_reference(outcome.output["text"])
    assert len((await resolve(outcome.output, store.payloads))["text"]) == 300_000
    small = await steps(store)._attempt(request("blob", {"size": 3_000}), 1)
    assert isinstance(small.output["text"], str)  # under the threshold: inline


async def test_the_interpreters_budget_per_item_lowers_the_threshold(store: Store) -> None:
    outcome = await steps(store)._attempt(request("blob", {"size": 3_000}, output_budget_bytes=1024), 1)
    assert is_reference(outcome.output["text"]) and outcome.output["text"]["bytes"] > 3_000


async def test_a_reference_whose_content_is_gone_fails_the_step_clearly(store: Store) -> None:
    missing = reference_to({"never": "stored"})
    outcome = await steps(store)._attempt(request("measure", {"value": missing}), 1)
    assert outcome.output is None and outcome.error is not None
    assert outcome.error.retryable is False and missing[REF_KEY] in outcome.error.message
