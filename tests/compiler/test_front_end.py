"""Serverless Workflow documents go to their own front end, with the caller's workflow catalog."""

from __future__ import annotations

import pytest

from tests.compiler import compile_yaml
from workflows import compiler
from workflows.plan import Plan, PlanBlock, PlanStep, StepKind
from workflows.swf import WorkflowCatalog

SWF = """
document: {dsl: 1.0.0, namespace: test, name: hello, version: 0.1.0}
do:
  - greet:
      set: {message: hello}
"""


def test_serverless_workflow_is_handed_to_its_front_end(monkeypatch: pytest.MonkeyPatch) -> None:
    received = {}

    def compile_swf(data, positions, diagnostics, *, catalog=None) -> Plan:
        received.update(data=data, position=positions.value(("do", 0)), catalog=catalog)
        step = PlanStep(id="greet", path="hello/greet", kind=StepKind.SET, with_={"message": "hello"})
        return Plan(
            source_format="swf", definition_id="hello", name="hello", version="0.1.0",
            root=PlanBlock(mode="sequence", steps=(step,)), expression_mode="swf",
        ).with_hash()  # fmt: skip

    monkeypatch.setattr(compiler, "compile_swf", compile_swf)
    catalog = WorkflowCatalog()
    compilation = compiler.compile_source(SWF.lstrip(), "flow.yaml", catalog=catalog)
    assert compilation.ok, compilation.diagnostics
    assert received["data"]["document"]["name"] == "hello" and received["position"] == (3, 5)
    assert received["catalog"] is catalog
    assert compilation.source_format == "swf"
    assert compilation.artifacts.stats.steps == 1
    assert 'greet = {"message": "hello"}' in compilation.artifacts.preview


def test_native_documents_do_not_reach_the_serverless_front_end() -> None:
    compilation = compile_yaml("id: plain\nsteps:\n  - {id: a, kind: set, with: {v: 1}}\n")
    assert compilation.ok and compilation.source_format == "native"
