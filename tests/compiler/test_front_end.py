"""Serverless Workflow documents go to their own front end, when the build has one."""

from __future__ import annotations

import sys
import types

import pytest

from tests.compiler import compile_yaml, the
from workflows.plan import Plan, PlanBlock, PlanStep, StepKind

SWF = """
document: {dsl: 1.0.0, namespace: test, name: hello, version: 0.1.0}
do:
  - greet:
      set: {message: hello}
"""


def test_serverless_workflow_without_a_front_end_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "workflows.swf", None)  # as if the module did not exist
    compilation = compile_yaml(SWF)
    error = the(compilation, "E010")
    assert error.message == "Serverless Workflow 1.0 definitions are not supported by this build"
    assert (error.line, error.column) == (1, 1)
    assert compilation.source_format == "swf" and not compilation.ok


def test_serverless_workflow_is_handed_to_its_front_end(monkeypatch: pytest.MonkeyPatch) -> None:
    received = {}

    def compile_swf(data, positions, diagnostics) -> Plan:
        received.update(data=data, position=positions.value(("do", 0)))
        step = PlanStep(id="greet", path="hello/greet", kind=StepKind.SET, with_={"message": "hello"})
        return Plan(
            source_format="swf", definition_id="hello", name="hello", version="0.1.0",
            root=PlanBlock(mode="sequence", steps=(step,)), expression_mode="swf",
        ).with_hash()  # fmt: skip

    monkeypatch.setitem(sys.modules, "workflows.swf", types.SimpleNamespace(compile_swf=compile_swf))
    compilation = compile_yaml(SWF)
    assert compilation.ok, compilation.diagnostics
    assert received["data"]["document"]["name"] == "hello" and received["position"] == (3, 5)
    assert compilation.source_format == "swf"
    assert compilation.artifacts.stats.steps == 1
    assert 'greet = {"message": "hello"}' in compilation.artifacts.preview
