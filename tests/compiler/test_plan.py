"""Lowering: what a good definition becomes in the plan the interpreter runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compiler import compile_yaml, the
from workflows.compiler import compile_file
from workflows.plan import ForEachSpec, OnError, RetrySpec, StepKind, SwitchCase

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))

ORDERS = """
id: order-sync
name: Order sync
inputs:
  type: object
  required: [customer]
  properties:
    customer: {type: string}
    limit: {type: integer, default: 10}
connections: [crm]
max_concurrency: 8
timeout: 10m
steps:
  - id: fetch
    kind: http
    connection: crm
    with: {method: GET, url: "https://crm.example/customers/${ .inputs.customer }/orders"}
    retry: {max_attempts: 5, initial_interval: 1s, backoff: 2, max_interval: 30s, non_retryable: [http_4xx]}
    timeout: 30s
  - id: score
    kind: python
    needs: [fetch]
    for_each: {items: "${ .steps.fetch.output.orders }", concurrency: 4, batch_size: 1}
    with: {function: score_order, args: {order: "${ .item }", position: "${ .index }"}}
    on_error: continue
  - id: route
    kind: switch
    needs: [score]
    with:
      cases:
        - {name: big, when: "${ (.steps.score.output | length) > 10 }", then: [notify]}
      default: [log]
  - id: notify
    kind: http
    if: "${ .inputs.limit > 1 }"
    with: {method: POST, url: "https://hooks.example/big", body: "${ .steps.score.output }"}
  - id: log
    kind: set
    with: {count: "${ .steps.score.output | length }"}
  - id: report
    kind: ai
    connection: crm
    needs: [score]
    with: {model: small, prompt: "Summarise ${ .steps.score.output }"}
  - id: slow
    kind: python
    needs: [fetch]
    timeout: 5m
    with: {function: reindex}
  - id: batched
    kind: http
    needs: [fetch]
    for_each: {items: [1, 2, 3], batch_size: 10}
    with: {url: "https://example.com/${ .item }"}
outputs:
  scored: "${ .steps.score.output }"
  log: "${ .steps.log.output }"
"""


@pytest.fixture(scope="module")
def plan():
    compilation = compile_yaml(ORDERS)
    assert compilation.ok, compilation.diagnostics
    return compilation.plan


def test_plan_is_one_dag_block_of_every_step_with_stable_paths(plan) -> None:
    assert plan.root.mode == "dag"
    assert [step.path for step in plan.root.steps] == [
        f"order-sync/{step_id}"
        for step_id in ("fetch", "score", "route", "notify", "log", "report", "slow", "batched")
    ]
    assert (plan.definition_id, plan.name, plan.version, plan.source_format) == (
        "order-sync",
        "Order sync",
        "0",
        "native",
    )
    assert (plan.max_concurrency, plan.timeout_s, plan.connections) == (8, 600.0, ("crm",))
    assert plan.input_schema["required"] == ["customer"]
    assert plan.outputs == {"scored": "${ .steps.score.output }", "log": "${ .steps.log.output }"}


def test_templates_stay_templates_and_conditions_become_bare_programs(plan) -> None:
    fetch, notify = plan.root.step("fetch"), plan.root.step("notify")
    assert fetch.with_["url"] == "https://crm.example/customers/${ .inputs.customer }/orders"
    assert notify.if_ == ".inputs.limit > 1"
    assert plan.root.step("score").for_each == ForEachSpec(items=".steps.fetch.output.orders", concurrency=4)
    assert plan.root.step("batched").for_each.items == "[1, 2, 3]"


def test_switch_becomes_cases_and_gates_its_targets(plan) -> None:
    route = plan.root.step("route")
    assert route.cases == (
        SwitchCase(name="big", when="(.steps.score.output | length) > 10", then="notify"),
        SwitchCase(name="default", when=None, then="log"),
    )
    assert route.with_ == {}
    assert plan.root.step("notify").needs == ("route",)
    assert plan.root.step("log").needs == ("route",)
    assert plan.root.step("log").metadata == {"gates": {"route": ["default"]}}


def test_retry_timeout_and_local_follow_the_kind(plan) -> None:
    steps = {step.id: step for step in plan.root.steps}
    assert steps["fetch"].retry == RetrySpec(
        max_attempts=5, initial_interval_s=1.0, backoff=2.0, max_interval_s=30.0, non_retryable=("http_4xx",)
    )
    assert steps["notify"].retry == RetrySpec()  # I/O default
    assert steps["log"].retry is None and steps["route"].retry is None  # pure kinds never retry
    assert {step_id: steps[step_id].timeout_s for step_id in steps} == {
        "fetch": 30.0, "score": 60.0, "route": None, "notify": 30.0, "log": None,
        "report": 120.0, "slow": 300.0, "batched": 30.0,
    }  # fmt: skip
    local = {step_id for step_id, step in steps.items() if step.local}
    # Only short GETs run locally by default: python (score) and writes (the POST notify) are regular
    # activities, so a completed one never runs again; ai is too long, slow has 5m, batched batches.
    assert local == {"fetch"}
    assert steps["score"].on_error == OnError.CONTINUE
    assert steps["report"].kind == StepKind.AI and steps["report"].connection == "crm"


def test_reads_list_the_steps_each_step_reads(plan) -> None:
    steps = {step.id: step.reads for step in plan.root.steps}
    assert steps == {
        "fetch": (), "score": ("fetch",), "route": ("score",), "notify": ("score",), "log": ("score",),
        "report": ("score",), "slow": (), "batched": (),
    }  # fmt: skip


def test_hash_is_stable_and_changes_with_any_edit() -> None:
    first = compile_yaml(ORDERS).plan.hash
    assert first.startswith("sha256:")
    assert compile_yaml(ORDERS).plan.hash == first
    reformatted = ORDERS.replace("    timeout: 30s", "    timeout: 30s   # comments and layout do not count")
    assert compile_yaml(reformatted).plan.hash == first
    assert compile_yaml(ORDERS.replace("concurrency: 4", "concurrency: 5")).plan.hash != first
    assert compile_yaml(ORDERS.replace("timeout: 30s", "timeout: 31s")).plan.hash != first


def test_transform_program_is_stored_without_its_wrapper() -> None:
    compilation = compile_yaml(
        """
        id: t
        steps:
          - {id: a, kind: transform, with: {input: [1, 2], jq: "${ add }"}}
        outputs: "${ .steps.a.output }"
        """
    )
    assert compilation.plan.root.step("a").with_ == {"input": [1, 2], "jq": "add"}


def test_a_step_may_be_gated_by_one_switch_only() -> None:
    compilation = compile_yaml(
        """
        id: two-switches
        steps:
          - {id: s1, kind: switch, with: {cases: [{name: a, when: "${ .inputs.a }", then: [x]}]}}
          - {id: s2, kind: switch, with: {cases: [{name: b, when: "${ .inputs.b }", then: [x]}]}}
          - {id: x, kind: set, with: {v: 1}}
        outputs: "${ .steps.x.output }"
        """
    )
    error = the(compilation, "E105")
    assert (
        error.message
        == "step 'x' is named by two switches ('s1' and 's2'); one switch at most may gate a step"
    )
    assert error.path == "/steps/1/with/cases/0/then/0"


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_examples_compile_without_warnings(path: Path) -> None:
    compilation = compile_file(path)
    assert compilation.ok and compilation.diagnostics == []
    assert [stage.status for stage in compilation.stages] == ["ok"] * 7


def test_hello_example_runs_without_connections_or_activities() -> None:
    plan = compile_file(next(path for path in EXAMPLES if path.stem == "hello")).plan
    assert plan.connections == ()
    assert {step.kind for step in plan.root.steps} == {StepKind.SET, StepKind.TRANSFORM, StepKind.SWITCH}


def test_orders_example_uses_http_python_and_for_each() -> None:
    plan = compile_file(next(path for path in EXAMPLES if path.stem == "orders")).plan
    assert {StepKind.HTTP, StepKind.PYTHON} <= {step.kind for step in plan.root.steps}
    assert any(step.for_each for step in plan.root.steps)


def test_local_overrides_the_automatic_choice() -> None:
    compilation = compile_yaml(
        """
        id: local
        steps:
          - {id: quick, kind: http, local: false, with: {url: "https://a.example"}}
          - {id: long, kind: python, local: true, timeout: 5m, with: {function: reindex}}
          - {id: sandboxed, kind: script, local: true, with: {code: "result = 1"}}
          - {id: auto, kind: http, with: {url: "https://b.example"}}
          - {id: pure, kind: set, local: false, with: {n: 1}}
        outputs: "${ .steps.pure.output }"
        """
    )
    assert compilation.ok, compilation.diagnostics
    local = {step.id: step.local for step in compilation.plan.root.steps}
    assert local == {"quick": False, "long": True, "sandboxed": True, "auto": True, "pure": False}


def test_local_only_applies_to_activities_and_not_to_for_each_items() -> None:
    compilation = compile_yaml(
        """
        id: local
        steps:
          - {id: pure, kind: set, local: true, with: {n: 1}}
          - {id: loop, kind: http, local: true, for_each: {items: [1, 2]}, with: {url: "https://a.example"}}
        outputs: "${ .steps.pure.output }"
        """
    )
    error, warning = compilation.diagnostics
    assert (error.code, error.path, error.line, error.column) == ("E105", "/steps/0/local", 3, 27)
    assert error.message == "step 'pure' (set) does not run as an activity: `local` does not apply"
    assert (warning.code, warning.path) == ("W303", "/steps/1/local")
    assert "for_each items always run as regular activities" in warning.message
