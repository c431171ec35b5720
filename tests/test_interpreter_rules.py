"""Rules the definition format promises, enforced by the interpreter on the real dev server:
max_concurrency, for_each concurrency across slices, approvers, the failing step chosen in plan
order, and the data an execution reports (attempts, definition version, skip reasons)."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from temporalio.client import WorkflowUpdateFailedError

from rte.executions import outcome, start_execution
from tests.conftest import Engine
from tests.support.http_server import Reply, TestServer
from workflows.state import ApprovalDecision, ExecutionConfig, ExecutionState, StepState


def _overlaps(steps: list[StepState]) -> int:
    """The most steps whose [started, ended] intervals overlap at any moment."""
    edges: list[tuple[datetime, int]] = []
    for step in steps:
        assert step.started_at and step.ended_at
        edges += [(step.started_at, 1), (step.ended_at, -1)]
    in_flight = most = 0
    for _moment, change in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        in_flight += change
        most = max(most, in_flight)
    return most


THREE_DELAYS = """
id: serial
max_concurrency: {limit}
steps:
  - {{id: a, kind: delay, with: {{duration: 300ms}}}}
  - {{id: b, kind: delay, with: {{duration: 300ms}}}}
  - {{id: c, kind: delay, with: {{duration: 300ms}}}}
"""


@pytest.mark.parametrize(("limit", "expected"), [(1, 1), (3, 3)])
async def test_max_concurrency_limits_how_many_steps_run_at_once(engine: Engine, limit: int, expected: int) -> None:
    ok, _output, state = await engine.run(THREE_DELAYS.format(limit=limit))
    assert ok
    steps = [state.steps[f"serial/{name}"] for name in "abc"]
    assert _overlaps(steps) == expected


async def test_a_run_config_max_concurrency_overrides_the_definition(engine: Engine) -> None:
    ok, _output, state = await engine.run(THREE_DELAYS.format(limit=3), config=ExecutionConfig(max_concurrency=1))
    assert ok
    assert _overlaps([state.steps[f"serial/{name}"] for name in "abc"]) == 1


async def test_for_each_concurrency_holds_across_child_slices(engine: Engine, http_server: TestServer) -> None:
    http_server.route("GET", "/item", *[Reply(200, {"ok": True}, delay_s=0.05)] * 30)
    ok, output, _state = await engine.run(
        f"""
id: sliced
steps:
  - id: call
    kind: http
    for_each: {{items: "${{ [range(30)] }}", concurrency: 2}}
    with: {{url: "{http_server.url}/item"}}
outputs: "${{ .steps.call.output | length }}"
""",
        config=ExecutionConfig(slice_items=10),
    )
    assert ok and output == 30
    assert http_server.max_in_flight <= 2


APPROVAL = """
id: gated
steps:
  - id: sign_off
    kind: approval
    with: {message: "Ship it?", approvers: [alice, carol], timeout: 1h}
outputs: "${ .steps.sign_off.output.by }"
"""


async def _waiting(handle: object) -> None:
    for _ in range(200):
        state = await handle.query("state", result_type=ExecutionState)  # type: ignore[attr-defined]
        if state.status == "waiting":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the approval never started waiting")


async def test_only_a_named_approver_may_decide(engine: Engine) -> None:
    handle = await engine.start(APPROVAL)
    await _waiting(handle)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("decide_approval", ApprovalDecision(step="sign_off", approved=True, by="mallory"))
    assert "'mallory' may not decide step 'sign_off'" in str(refused.value.cause)
    assert "alice, carol" in str(refused.value.cause)
    state = await handle.query("state", result_type=ExecutionState)
    assert state.status == "waiting"  # the refusal changed nothing
    await handle.execute_update("decide_approval", ApprovalDecision(step="sign_off", approved=True, by="carol"))
    assert await outcome(handle) == (True, "carol")


async def test_when_two_steps_fail_at_once_the_first_in_plan_order_ends_the_run(engine: Engine) -> None:
    for _ in range(3):  # the same answer every time, whatever order the failures arrive in
        ok, error, _state = await engine.run(
            """
id: two_failures
steps:
  - {id: first, kind: transform, with: {jq: 'error("first broke")'}}
  - {id: second, kind: transform, with: {jq: 'error("second broke")'}}
"""
        )
        assert not ok
        assert error["step_path"] == "two_failures/first", error


async def test_a_step_that_failed_after_its_retries_reports_its_attempts(engine: Engine) -> None:
    ok, _error, state = await engine.run(
        """
id: retried
steps:
  - id: flaky
    kind: python
    with: {function: fail_on, args: {value: 1, bad: [1]}}
    retry: {max_attempts: 3, initial_interval: 10ms}
"""
    )
    assert not ok
    step = state.steps["retried/flaky"]
    assert step.status == "failed" and step.attempts == 3 and step.error is not None and step.error.attempts == 3


async def test_the_definition_version_is_the_stored_one_everywhere(engine: Engine) -> None:
    plan = engine.compile("id: versioned\nsteps:\n  - {id: a, kind: set, with: {x: 1}}\n")
    handle = await start_execution(engine.client, plan, {}, task_queue=engine.task_queue, definition_version="7")
    assert (await outcome(handle))[0]
    state = await handle.query("state", result_type=ExecutionState)
    described = await handle.describe()
    from rte import temporal as sa

    assert state.definition_version == "7"
    assert described.typed_search_attributes.get(sa.DEFINITION_VERSION) == "7"


async def test_a_step_gated_by_a_skipped_switch_says_so(engine: Engine) -> None:
    ok, _output, state = await engine.run(
        """
id: gates
inputs: {type: object, properties: {go: {type: boolean}}}
steps:
  - id: route
    kind: switch
    if: "${ .inputs.go }"
    with:
      cases:
        - {name: go, when: "${ true }", then: [target]}
  - {id: target, kind: set, with: {x: 1}}
outputs: "${ .steps.target.output }"
""",
        {"go": False},
    )
    assert ok
    assert state.steps["gates/route"].status == "skipped"
    assert state.steps["gates/target"].skipped_reason == "switch 'route' was skipped"


async def test_for_each_over_a_non_array_says_what_it_got_in_json_terms(engine: Engine) -> None:
    ok, error, _state = await engine.run(
        """
id: not_a_list
inputs: {type: object}
steps:
  - id: each
    kind: set
    for_each: {items: "${ .inputs.missing }"}
    with: {x: 1}
"""
    )
    assert not ok
    assert "for_each.items must be an array, got null" in error["message"], error
