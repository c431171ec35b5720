"""Every definition in examples/ runs, as examples/README.md says, on a real Temporal dev server:
against the mock shop started as a process (`python examples/mock_service.py --port P`), with the
`shop` connection stored and a worker loading `examples.functions`. Approvals and paused steps are
decided by the test, the way `rte approve` and `rte recover decide` send them."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML
from temporalio.client import Client, WorkflowHandle

from rte.config import Settings
from rte.executions import outcome
from rte.store import Store
from tests.conftest import Engine, running_engine
from tests.debug.support import decide, wait_for
from tests.swf.conftest import CORPUS, CORPUS_MISSING
from workflows.compiler import compile_source
from workflows.params import validate_params
from workflows.state import ApprovalDecision, ExecutionState, RecoveryDecision

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SWF_SCHEMA = CORPUS / "schema" / "workflow.yaml"
RUN_TIMEOUT_S = 120
# The examples each test below runs; a new example must be added to one of them.
COVERED = {
    "hello.yaml",
    "orders.yaml",
    "refund.yaml",
    "shipping.yaml",
    "invoice.yaml",
    "order-status.sw.yaml",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def shop() -> Iterator[str]:
    """The mock shop, started exactly as the README says."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "examples/mock_service.py", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).json() == {"ok": True}:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the mock shop did not start: {process.communicate()[0]}")
        time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
async def examples_engine(
    client: Client, store: Store, settings: Settings, shop: str
) -> AsyncIterator[Engine]:
    """A worker set up like `rte up -m examples.functions`, and the `shop` connection of the README."""
    await store.connections.put("shop", "bearer", {"base_url": shop}, {"token": "demo-token"})
    worker_settings = settings.model_copy(update={"function_modules": ["examples.functions"]})
    async with running_engine(client, store, worker_settings) as engine:
        yield engine


def example(name: str) -> str:
    return (EXAMPLES / name).read_text()


async def start(engine: Engine, name: str, params: dict[str, Any]) -> WorkflowHandle[Any, Any]:
    """Start an example as `rte run` does: compiled, its parameters' defaults applied and checked."""
    plan = compile_source(example(name), name).plan
    assert plan is not None
    return await engine.start(plan, validate_params(plan.input_schema, params))


async def run(engine: Engine, name: str, params: dict[str, Any]) -> tuple[Any, ExecutionState]:
    handle = await start(engine, name, params)
    ok, output = await asyncio.wait_for(outcome(handle), RUN_TIMEOUT_S)
    state = await handle.query("state", result_type=ExecutionState)
    assert ok, output
    return output, state


async def requests_to(shop: str, path: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(headers={"Authorization": "Bearer demo-token"}) as http:
        received = (await http.get(f"{shop}/requests")).json()
    return [request for request in received if request["path"] == path]


def test_every_example_is_run_by_this_file() -> None:
    found = {path.name for path in EXAMPLES.glob("*.yaml")}
    assert found == COVERED, f"add {sorted(found - COVERED)} to tests/test_examples.py"


def test_every_example_compiles_without_warnings() -> None:
    for name in sorted(COVERED):
        compilation = compile_source(example(name), name)
        assert compilation.ok and compilation.diagnostics == [], (name, compilation.diagnostics)


async def test_hello_greets(examples_engine: Engine) -> None:
    output, _ = await run(examples_engine, "hello.yaml", {"name": "Ada", "tone": "excited"})
    assert output == {"tone": "excited", "message": "HELLO, ADA!"}


async def test_orders_scores_a_big_batch_and_notifies_the_shop(examples_engine: Engine, shop: str) -> None:
    output, state = await run(examples_engine, "orders.yaml", {"customer": "acme"})
    assert output["branch"] == "big" and output["summary"] is None
    scores = output["scores"]
    assert len(scores) == 10  # the default limit
    # Order A-1007 has no amount: score_order failed on it, once (not retried), and `on_error:
    # continue` left null in its place while the step completed.
    assert scores[6] is None and all(score is not None for i, score in enumerate(scores) if i != 6)
    score = state.steps["orders/score"]
    assert score.status == "completed" and score.items is not None and score.items.failed == 1
    high = [s["order"] for s in scores if s and s["priority"] == "high"]
    assert high == ["A-1003", "A-1006", "A-1010"]
    assert output["notification"].startswith("N-")
    (notified,) = await requests_to(shop, "/notifications")
    assert notified["body"] == {"customer": "acme", "high_priority": high}


async def test_orders_summarises_a_small_batch(examples_engine: Engine) -> None:
    output, state = await run(examples_engine, "orders.yaml", {"customer": "globex"})
    assert output["branch"] == "default" and output["notification"] is None
    assert output["summary"] == {"customer": "globex", "scored": 2}
    assert state.steps["orders/notify"].status == "skipped"


async def test_refund_waits_for_a_person_then_books_it(examples_engine: Engine) -> None:
    params = {"order": "A-1003", "amount": 120, "reason": "arrived broken"}
    handle = await start(examples_engine, "refund.yaml", params)
    waiting = await wait_for(handle, lambda s: s.steps["refund/ask"].status == "waiting", timeout_s=60)
    approval = waiting.steps["refund/ask"].approval
    assert approval is not None
    assert approval.message == "Refund 120 EUR on order A-1003? Reason: arrived broken"
    await handle.execute_update(
        "decide_approval", ApprovalDecision(step="ask", approved=True, by="tester", comment="photo checked")
    )
    ok, output = await asyncio.wait_for(outcome(handle), RUN_TIMEOUT_S)
    assert ok and output["approved_by"] == "tester" and output["refund"].startswith("R-")


async def test_a_small_refund_is_approved_by_policy(examples_engine: Engine) -> None:
    output, state = await run(examples_engine, "refund.yaml", {"order": "A-1002", "amount": 20})
    assert output["approved_by"] == "policy" and output["refund"].startswith("R-")
    assert state.steps["refund/ask"].status == "skipped"


async def test_shipping_pauses_on_a_refused_country_and_an_operator_retries_it(
    examples_engine: Engine, shop: str
) -> None:
    handle = await start(examples_engine, "shipping.yaml", {"order": "A-1003", "country": "Atlantis"})
    paused = await wait_for(handle, lambda s: s.steps["shipping/ship"].awaiting_decision, timeout_s=60)
    error = paused.steps["shipping/ship"].error
    assert error is not None and error.category == "http_4xx" and "422" in error.message
    corrected = {"method": "POST", "url": "shipments", "body": {"order": "A-1003", "country": "FR"}}
    await decide(handle, RecoveryDecision(step="ship", action="retry", input=corrected, by="tester"))
    ok, output = await asyncio.wait_for(outcome(handle), RUN_TIMEOUT_S)
    assert ok, output
    assert output == {"price": 17.9, "tracking": "TRK-A-1003-FR"}  # the quote was for Atlantis
    shipments = await requests_to(shop, "/shipments")
    assert [request["body"]["country"] for request in shipments][-2:] == ["Atlantis", "FR"]


async def test_invoice_totals_come_from_the_sandboxed_script(examples_engine: Engine) -> None:
    output, state = await run(examples_engine, "invoice.yaml", {})
    assert output == {
        "totals": {"subtotal": 288.9, "tax": 57.78, "total": 346.68},
        "label": "Total 346.68 EUR, of which tax 57.78 EUR",
    }
    assert state.steps["invoice/totals"].status == "completed"


async def test_the_serverless_workflow_example_labels_customers(examples_engine: Engine, shop: str) -> None:
    for customer, label in (("acme", "key account"), ("initech", "no new orders")):
        output, _ = await run(examples_engine, "order-status.sw.yaml", {"customer": customer, "shop": shop})
        assert output == {"customer": customer, "label": label}


def test_the_format_documentations_complete_example_is_examples_orders() -> None:
    text = (ROOT / "docs" / "definition-format.md").read_text()
    section = text.split("## A complete example", 1)[1]
    documented = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    from_docs = compile_source(documented, "definition-format.md").plan
    shipped = compile_source(example("orders.yaml"), "orders.yaml").plan
    assert from_docs is not None and shipped is not None
    assert from_docs.hash == shipped.hash  # the same workflow, comments aside


@pytest.mark.skipif(not SWF_SCHEMA.is_file(), reason=CORPUS_MISSING)
def test_the_serverless_workflow_example_is_valid_against_the_specs_schema() -> None:
    validator = Draft202012Validator(YAML(typ="safe").load(SWF_SCHEMA.read_text()))
    for path in sorted(EXAMPLES.glob("*.sw.yaml")):
        errors = [error.message for error in validator.iter_errors(YAML(typ="safe").load(path.read_text()))]
        assert errors == [], path.name
