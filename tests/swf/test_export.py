"""Native definitions exported as Serverless Workflow 1.0: the document validates against the spec's
schema, compiles back, and runs to the same output as the native definition."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML
from typer.testing import CliRunner

from rte.cli import app
from tests.conftest import Engine
from tests.support.http_server import Reply, TestServer
from tests.swf.conftest import CORPUS, CORPUS_MISSING
from workflows.compiler import compile_file, compile_source
from workflows.plan import Plan
from workflows.swf.export import export_swf

SCHEMA = CORPUS / "schema" / "workflow.yaml"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def native(source: str) -> Plan:
    compilation = compile_source(source, "native.yaml")
    assert compilation.ok and compilation.plan is not None, compilation.diagnostics
    return compilation.plan


def orders_definition(url: str) -> str:
    return f"""
id: order_report
name: Order report
version: "2"
inputs:
  type: object
  required: [customer]
  properties:
    customer: {{type: string}}
    rush: {{type: boolean, default: false}}
steps:
  - id: fetch
    kind: http
    with:
      url: "{url}/customers/${{ .inputs.customer }}/orders"
      query: {{limit: 10}}
      response: full
    retry: {{max_attempts: 3, initial_interval: 10ms, backoff: 2}}
  - id: totals
    kind: python
    needs: [fetch]
    for_each: {{items: "${{ .steps.fetch.output.body.orders }}"}}
    with: {{function: add, args: {{a: "${{ .item.amount }}", b: "${{ .index }}"}}}}
  - id: size
    kind: switch
    needs: [totals]
    with:
      cases:
        - {{name: big, when: "${{ (.steps.totals.output | add) > 100 }}", then: [celebrate]}}
      default: [shrug]
  - id: celebrate
    kind: set
    with: {{note: "big order for ${{ .inputs.customer }}", total: "${{ .steps.totals.output | add }}"}}
  - id: shrug
    kind: transform
    with: {{input: "${{ .steps.totals.output }}", jq: "{{note: \\"small\\", total: add}}"}}
  - id: pause
    kind: delay
    needs: [size]
    if: "${{ .inputs.rush | not }}"
    with: {{duration: 100ms}}
outputs:
  status: "${{ .steps.fetch.output.status }}"
  summary: "${{ .steps.celebrate.output // .steps.shrug.output }}"
  paused: "${{ .steps.pause.output.slept_s }}"
"""


@pytest.mark.skipif(not SCHEMA.is_file(), reason=CORPUS_MISSING)
@pytest.mark.parametrize("source", ["hello", "orders"])
def test_the_export_validates_against_the_specifications_schema(source: str) -> None:
    plan = (
        compile_file(EXAMPLES / "hello.yaml").plan
        if source == "hello"
        else native(orders_definition("https://shop.example"))
    )
    assert plan is not None
    exported = export_swf(plan)
    assert exported.problems == [] and exported.document is not None
    validator = Draft202012Validator(YAML(typ="safe").load(SCHEMA.read_text()))
    assert [error.message for error in validator.iter_errors(exported.document)] == []


async def test_the_export_runs_to_the_same_output_as_the_native_definition(
    engine: Engine, http_server: TestServer
) -> None:
    orders = {"orders": [{"amount": 60}, {"amount": 70}]}
    http_server.route("GET", "/customers/c1/orders", Reply(503, {}), Reply(200, orders))
    plan = native(orders_definition(http_server.url))
    exported = export_swf(plan)
    assert exported.document is not None, exported.problems
    compilation = compile_source(_dump(exported.document), "exported.yaml")
    assert compilation.ok and compilation.plan is not None, compilation.diagnostics
    ok_native, native_output, _ = await engine.run(plan, {"customer": "c1", "rush": False})
    http_server.route("GET", "/customers/c1/orders", Reply(503, {}), Reply(200, orders))
    ok_swf, swf_output, _ = await engine.run(compilation.plan, {"customer": "c1", "rush": False})
    assert ok_native and ok_swf, (native_output, swf_output)
    assert native_output == {
        "status": 200,
        "summary": {"note": "big order for c1", "total": 131},
        "paused": 0.1,
    }
    assert swf_output == native_output
    assert len(http_server.calls("/customers/c1/orders")) == 4  # each run retried its 503 once


def test_steps_without_an_equivalent_are_named_in_the_refusal() -> None:
    plan = native(
        """
id: manual
steps:
  - {id: ask, kind: approval, with: {message: ok?}}
  - {id: tolerant, kind: set, with: {a: 1}, on_error: continue}
"""
    )
    exported = export_swf(plan)
    assert exported.document is None
    assert exported.problems == [
        "step 'ask': `approval` steps wait for a person; Serverless Workflow would need events for that",
        "step 'tolerant': on_error 'continue' has no Serverless Workflow equivalent",
    ]


def test_a_serverless_workflow_plan_exports_its_own_document() -> None:
    text = (
        "document: {dsl: '1.0.0', namespace: test, name: same, version: '1.0.0'}\ndo:\n  - a: {set: {x: 1}}\n"
    )
    compilation = compile_source(text, "same.yaml")
    assert compilation.plan is not None
    assert export_swf(compilation.plan).document == YAML(typ="safe").load(text)


def test_rte_export_writes_a_document_that_compiles_back(tmp_path: Path) -> None:
    out = tmp_path / "hello.swf.yaml"
    result = CliRunner().invoke(
        app, ["export", str(EXAMPLES / "hello.yaml"), "--format", "swf", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    compilation = compile_file(out)
    assert compilation.ok and compilation.source_format == "swf"
    refused = CliRunner().invoke(app, ["export", str(EXAMPLES / "orders.yaml")])
    assert refused.exit_code == 1
    assert "on_error 'continue'" in refused.output


def _dump(document: dict[str, Any]) -> str:
    buffer = io.StringIO()
    YAML().dump(document, buffer)
    return buffer.getvalue()
