"""Failure recovery on a real dev server: on_error: pause and the operator's decision, retrying
only the failed for_each items, retry from scratch and resume from the failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowUpdateFailedError

from rte import temporal as sa
from rte.executions import outcome
from rte.recovery import RecoveryError, recorded_steps, resume_from_failure, retry_from_scratch
from tests.conftest import Engine
from tests.debug.support import decide, state_of, wait_for
from tests.support.http_server import Reply, TestServer
from workflows.state import ExecutionConfig, ExecutionStatus, RecoveryDecision, StepStatus

PAUSING = """
id: pausing
steps:
  - {id: ok, kind: python, with: {function: add, args: {a: 1, b: 1}}}
  - id: check
    kind: python
    needs: [ok]
    with: {function: fail_on, args: {value: 3, bad: [3]}}
    on_error: pause
  - {id: after, kind: python, needs: [check], with: {function: add, args: {a: "${ .steps.check.output }", b: 1}}}
outputs: {after: "${ .steps.after.output }"}
"""


def awaiting(step_path: str):  # noqa: ANN201 - a predicate for wait_for
    return lambda state: state.steps[step_path].awaiting_decision


async def test_failing_step_waits_and_operator_retries_with_an_edited_input(engine: Engine) -> None:
    handle = await engine.start(PAUSING)
    state = await wait_for(handle, awaiting("pausing/check"))
    assert state.status == ExecutionStatus.PAUSED
    assert state.steps["pausing/check"].status == StepStatus.PAUSED
    assert "value 3 is not allowed" in (state.steps["pausing/check"].error.message or "")
    assert (await handle.describe()).typed_search_attributes.get(sa.DEBUG_STATE) == "awaiting_decision"
    new_input = {"function": "fail_on", "args": {"value": 4, "bad": [3]}}
    await decide(handle, RecoveryDecision(step="check", action="retry", input=new_input, by="ops"))
    ok, output = await outcome(handle)
    assert ok and output == {"after": 5}
    final = await state_of(handle)
    decision = final.steps["pausing/check"].decisions[0]
    assert (decision.action, decision.by, decision.input) == ("retry", "ops", new_input)
    assert final.steps["pausing/check"].status == StepStatus.COMPLETED


async def test_skip_with_a_substitute_output_and_fail(engine: Engine) -> None:
    handle = await engine.start(PAUSING)
    await wait_for(handle, awaiting("pausing/check"))
    await decide(handle, RecoveryDecision(step="pausing/check", action="skip", output=41))
    assert (await outcome(handle)) == (True, {"after": 42})

    handle = await engine.start(PAUSING)
    await wait_for(handle, awaiting("pausing/check"))
    await decide(handle, RecoveryDecision(step="check", action="fail", reason="bad data"))
    ok, error = await outcome(handle)
    assert not ok and "value 3 is not allowed" in error["message"]


async def test_error_mode_pause_applies_to_every_step(engine: Engine) -> None:
    handle = await engine.start(
        """
id: modepause
steps:
  - {id: bad, kind: python, with: {function: fail_on, args: {value: 1, bad: [1]}}}
""",
        config=ExecutionConfig(error_mode="pause"),
    )
    await wait_for(handle, awaiting("modepause/bad"))
    await decide(handle, RecoveryDecision(step="bad", action="skip", output="fine"))
    assert (await outcome(handle)) == (True, {"bad": "fine"})


async def test_decisions_for_a_step_that_has_not_failed_or_does_not_exist_are_rejected(
    engine: Engine,
) -> None:
    handle = await engine.start(PAUSING)
    await wait_for(handle, awaiting("pausing/check"))
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await decide(handle, RecoveryDecision(step="ok", action="skip"))
    assert "step 'ok' is not waiting for a decision (it is completed" in str(failure.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await decide(handle, RecoveryDecision(step="ghost", action="retry"))
    assert "unknown step 'ghost'" in str(failure.value.cause)
    state = await state_of(handle)
    assert state.steps["pausing/check"].decisions == [] and state.steps["pausing/check"].awaiting_decision
    await decide(handle, RecoveryDecision(step="check", action="fail"))
    assert (await outcome(handle))[0] is False


async def test_retry_failed_items_reruns_only_those_items(engine: Engine, http_server: TestServer) -> None:
    for index in range(10):
        replies = (
            [Reply(500, {"e": index}), Reply(200, {"n": index})]
            if index in (3, 7)
            else [Reply(200, {"n": index})]
        )
        http_server.route("GET", f"/item/{index}", *replies)
    handle = await engine.start(
        f"""
id: items
steps:
  - id: fetch
    kind: http
    for_each: {{items: "${{ [range(10)] }}", concurrency: 3}}
    with: {{url: "{http_server.url}/item/${{ .item }}"}}
    retry: {{max_attempts: 1}}
    on_error: pause
outputs: "${{ [.steps.fetch.output[].n] }}"
"""
    )
    state = await wait_for(handle, awaiting("items/fetch"))
    assert state.steps["items/fetch"].failed_items == [3, 7]
    assert [len(http_server.calls(f"/item/{i}")) for i in range(10)] == [1] * 10
    await decide(handle, RecoveryDecision(step="fetch", action="retry", by="ops"))
    ok, output = await outcome(handle)
    assert ok and output == list(range(10))
    assert [len(http_server.calls(f"/item/{i}")) for i in range(10)] == [1, 1, 1, 2, 1, 1, 1, 2, 1, 1]
    final = await state_of(handle)
    step = final.steps["items/fetch"]
    assert step.items is not None and (step.items.completed, step.items.failed) == (10, 0)
    assert step.decisions[0].failed_items == [3, 7]


async def test_skip_failed_items_keeps_the_others(engine: Engine, http_server: TestServer) -> None:
    for index in range(4):
        http_server.route("GET", f"/s/{index}", Reply(500 if index == 2 else 200, {"n": index}))
    handle = await engine.start(
        f"""
id: skipitems
steps:
  - id: fetch
    kind: http
    for_each: {{items: "${{ [range(4)] }}"}}
    with: {{url: "{http_server.url}/s/${{ .item }}"}}
    retry: {{max_attempts: 1}}
    on_error: pause
outputs: "${{ .steps.fetch.output }}"
"""
    )
    await wait_for(handle, awaiting("skipitems/fetch"))
    await decide(handle, RecoveryDecision(step="fetch", action="skip", output={"n": None}))
    ok, output = await outcome(handle)
    assert ok and [entry["n"] for entry in output] == [0, 1, None, 3]
    assert len(http_server.calls("/s/0")) == 1


RESUMABLE = """
id: resumable
inputs: {{type: object, properties: {{v: {{type: integer}}}}}}
steps:
  - {{id: first, kind: python, with: {{function: record_call, args: {{name: first, marker_dir: "{markers}"}}}}}}
  - {{id: pick, kind: set, needs: [first], with: {{v: "${{ .steps.first.output }}"}}}}
  - {{id: flaky, kind: python, needs: [pick], with: {{function: fail_on, args: {{value: "${{ .inputs.v }}", bad: [1]}}}}}}
  - {{id: last, kind: python, needs: [flaky], with: {{function: record_call, args: {{name: last, marker_dir: "{markers}"}}}}}}
outputs: {{first: "${{ .steps.first.output }}", flaky: "${{ .steps.flaky.output }}", last: "${{ .steps.last.output }}"}}
"""


async def test_resume_from_failure_does_not_rerun_succeeded_steps(engine: Engine, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    plan = Engine.compile(RESUMABLE.format(markers=markers))
    handle = await engine.start(plan, {"v": 1})
    ok, _ = await outcome(handle)
    assert not ok and len(list(markers.glob("first.*"))) == 1
    with pytest.raises(RecoveryError) as refused:
        await resume_from_failure(engine.client, "no-such-execution", task_queue=engine.task_queue)
    assert refused.value.status == 404
    # Same parameters, so the step fails again; what matters is that 'first' is reused.
    new_id = await resume_from_failure(engine.client, handle.id, task_queue=engine.task_queue)
    resumed = engine.client.get_workflow_handle(new_id)
    ok, error = await outcome(resumed)
    assert not ok and "value 1 is not allowed" in error["message"]
    assert len(list(markers.glob("first.*"))) == 1  # reused, not run again
    state = await state_of(resumed)
    assert state.steps["resumable/first"].reused_from == handle.id and state.resumed_from == handle.id
    assert state.steps["resumable/pick"].status == StepStatus.COMPLETED
    description = await resumed.describe()
    assert description.typed_search_attributes.get(sa.PARENT_EXECUTION) == handle.id
    assert description.typed_search_attributes.get(sa.TRIGGER_TYPE) == "resume"


async def test_resume_runs_the_failed_step_and_the_rest(
    engine: Engine, tmp_path: Path, http_server: TestServer
) -> None:
    http_server.route("GET", "/once", Reply(500, {"e": 1}), Reply(200, {"ok": True}))
    markers = tmp_path / "m"
    handle = await engine.start(
        f"""
id: resume2
steps:
  - {{id: first, kind: python, with: {{function: record_call, args: {{name: first, marker_dir: "{markers}"}}}}}}
  - {{id: call, kind: http, needs: [first], with: {{url: "{http_server.url}/once"}}, retry: {{max_attempts: 1}}}}
  - {{id: last, kind: python, needs: [call], with: {{function: record_call, args: {{name: last, marker_dir: "{markers}"}}}}}}
outputs: {{call: "${{ .steps.call.output }}", last: "${{ .steps.last.output }}"}}
"""
    )
    assert (await outcome(handle))[0] is False
    new_id = await resume_from_failure(engine.client, handle.id, task_queue=engine.task_queue)
    ok, output = await outcome(engine.client.get_workflow_handle(new_id))
    assert ok and output == {"call": {"ok": True}, "last": "last"}
    assert (len(list(markers.glob("first.*"))), len(list(markers.glob("last.*")))) == (1, 1)
    assert len(http_server.calls("/once")) == 2

    again = await retry_from_scratch(engine.client, handle.id, task_queue=engine.task_queue)
    ok, output = await outcome(engine.client.get_workflow_handle(again))
    assert ok and len(list(markers.glob("first.*"))) == 2  # from scratch: everything runs again

    frames = await recorded_steps(engine.client, new_id)
    assert [frame.step_id for frame in frames] == ["call", "last"]
    assert frames[1].variables["steps"]["call"]["output"] == {"ok": True}
    with pytest.raises(RecoveryError) as refused:
        await resume_from_failure(engine.client, new_id, task_queue=engine.task_queue)
    assert refused.value.status == 409
