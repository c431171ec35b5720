"""The interpreter workflow on a real Temporal dev server: every step kind, the DAG, for_each,
retries, timeouts and error handling."""

from __future__ import annotations

import asyncio
import json

from rte.store import Store
from tests.conftest import Engine
from tests.support.http_server import Reply, TestServer
from workflows.state import ApprovalDecision, ExecutionConfig, ExecutionState


async def test_pure_steps_compute_outputs_without_activities(engine: Engine) -> None:
    ok, output, state = await engine.run(
        """
id: pure
inputs: {type: object, properties: {name: {type: string}, n: {type: integer}}}
steps:
  - id: greet
    kind: set
    with: {text: "Hello ${ .inputs.name }", double: "${ .inputs.n * 2 }"}
  - id: shout
    kind: transform
    needs: [greet]
    with: {input: "${ .steps.greet.output }", jq: ".text | ascii_upcase"}
  - id: route
    kind: switch
    needs: [greet]
    with:
      cases:
        - {name: big, when: "${ .steps.greet.output.double > 10 }", then: [big]}
      default: [small]
  - {id: big, kind: set, with: {size: big}}
  - {id: small, kind: set, with: {size: small}}
outputs:
  text: "${ .steps.shout.output }"
  size: "${ .steps.big.output.size // .steps.small.output.size }"
""",
        {"name": "Ada", "n": 7},
    )
    assert ok, output
    assert output == {"text": "HELLO ADA", "size": "big"}
    assert state.steps["pure/small"].status == "skipped"
    assert "switch 'route' chose another case" in (state.steps["pure/small"].skipped_reason or "")
    history = [
        event async for event in engine.client.get_workflow_handle(state.execution_id).fetch_history_events()
    ]
    assert not [e for e in history if e.HasField("activity_task_scheduled_event_attributes")]


async def test_dag_runs_independent_steps_in_parallel(engine: Engine, http_server: TestServer) -> None:
    http_server.route("GET", "/slow", Reply(200, {"ok": True}, delay_s=0.5))
    ok, output, state = await engine.run(
        f"""
id: fanout
steps:
  - {{id: a, kind: http, with: {{url: "{http_server.url}/slow"}}}}
  - {{id: b, kind: http, with: {{url: "{http_server.url}/slow"}}}}
  - {{id: c, kind: http, with: {{url: "{http_server.url}/slow"}}}}
  - id: join
    kind: set
    needs: [a, b, c]
    with: {{all: "${{ [.steps.a.output.ok, .steps.b.output.ok, .steps.c.output.ok] | all }}"}}
outputs: "${{ .steps.join.output.all }}"
"""
    )
    assert ok and output is True
    assert http_server.max_in_flight == 3


async def test_http_step_sends_idempotency_key_and_retries_5xx_then_succeeds(
    engine: Engine, http_server: TestServer
) -> None:
    http_server.route("POST", "/orders", Reply(503, {"e": 1}), Reply(502, {"e": 2}), Reply(201, {"id": 42}))
    ok, output, state = await engine.run(
        f"""
id: retrying
steps:
  - id: create
    kind: http
    with: {{method: POST, url: "{http_server.url}/orders", body: {{qty: 2}}}}
    retry: {{max_attempts: 4, initial_interval: 100ms, backoff: 1}}
outputs: "${{ .steps.create.output }}"
"""
    )
    assert ok and output == {"id": 42}
    calls = http_server.calls("/orders")
    assert len(calls) == 3
    keys = {call.headers.get("Idempotency-Key") for call in calls}
    assert len(keys) == 1 and None not in keys  # the same key on every retry
    assert state.steps["retrying/create"].attempts == 3


async def test_non_retryable_4xx_fails_after_one_call(engine: Engine, http_server: TestServer) -> None:
    http_server.route("GET", "/missing", Reply(404, {"error": "nope"}))
    ok, error, state = await engine.run(
        f"""
id: notfound
steps:
  - id: get
    kind: http
    with: {{url: "{http_server.url}/missing"}}
    retry: {{max_attempts: 5, initial_interval: 100ms}}
"""
    )
    assert not ok
    assert error["category"] == "http_4xx"
    assert "404" in error["message"]
    assert len(http_server.calls("/missing")) == 1
    assert state.steps["notfound/get"].status == "failed"


async def test_rate_limit_honours_retry_after(engine: Engine, http_server: TestServer) -> None:
    http_server.route("GET", "/limited", Reply(429, {}, headers={"Retry-After": "1"}), Reply(200, {"ok": 1}))
    ok, output, _ = await engine.run(
        f"""
id: limited
steps:
  - id: get
    kind: http
    with: {{url: "{http_server.url}/limited"}}
    retry: {{max_attempts: 3, initial_interval: 10ms}}
outputs: "${{ .steps.get.output }}"
"""
    )
    assert ok and output == {"ok": 1}
    first, second = http_server.calls("/limited")
    # The retry waited for Retry-After (1 s), not for the 10 ms initial interval.
    assert second.at - first.at >= 0.9


async def test_step_timeout_is_reported_as_timeout(engine: Engine, http_server: TestServer) -> None:
    http_server.route("GET", "/hang", Reply(200, {}, delay_s=3))
    ok, error, state = await engine.run(
        f"""
id: hanging
steps:
  - id: get
    kind: http
    with: {{url: "{http_server.url}/hang", timeout_s: 1}}
    timeout: 1s
    retry: {{max_attempts: 1}}
"""
    )
    assert not ok
    assert error["category"] == "timeout"
    assert state.steps["hanging/get"].error.category == "timeout"


async def test_on_error_continue_skips_dependants_and_finishes(
    engine: Engine, http_server: TestServer
) -> None:
    http_server.route("GET", "/broken", Reply(500, {}))
    ok, output, state = await engine.run(
        f"""
id: tolerant
steps:
  - id: flaky
    kind: http
    with: {{url: "{http_server.url}/broken"}}
    retry: {{max_attempts: 2, initial_interval: 50ms}}
    on_error: continue
  - {{id: after, kind: set, needs: [flaky], with: {{v: 1}}}}
  - {{id: independent, kind: set, with: {{v: 2}}}}
outputs: {{independent: "${{ .steps.independent.output.v }}", flaky: "${{ .steps.flaky.status }}"}}
"""
    )
    assert ok, output
    assert output == {"independent": 2, "flaky": "failed"}
    assert state.steps["tolerant/flaky"].status == "failed"
    assert state.steps["tolerant/flaky"].error.category == "http_5xx"
    assert state.steps["tolerant/after"].status == "skipped"
    assert len(http_server.calls("/broken")) == 2
    assert state.error_count == 1


async def test_after_on_error_continue_a_join_that_also_needs_a_step_that_ran_still_runs(
    engine: Engine, http_server: TestServer
) -> None:
    """What docs/definition-format.md ("When a step fails") says: every step that needs the failed
    one is skipped, even with other needs; below that, a step runs unless all its needs were skipped."""
    http_server.route("GET", "/broken", Reply(404, {}))
    ok, output, state = await engine.run(
        f"""
id: joins
steps:
  - {{id: flaky, kind: http, with: {{url: "{http_server.url}/broken"}}, on_error: continue}}
  - {{id: other, kind: set, with: {{v: 1}}}}
  - {{id: direct, kind: set, needs: [flaky, other], with: {{v: 2}}}}
  - {{id: below, kind: set, needs: [direct], with: {{v: 3}}}}
  - id: join
    kind: set
    needs: [direct, other]
    with: {{flaky: "${{ .steps.flaky.output }}", status: "${{ .steps.flaky.status }}"}}
outputs: "${{ .steps.join.output }}"
"""
    )
    assert ok, output
    assert output == {"flaky": None, "status": "failed"}
    assert state.steps["joins/direct"].skipped_reason == "step 'flaky' failed"
    assert state.steps["joins/below"].skipped_reason == "every step it needs was skipped"


async def test_for_each_with_failures_continue_records_each_item(engine: Engine) -> None:
    ok, output, state = await engine.run(
        """
id: items
steps:
  - id: check
    kind: python
    for_each: {items: "${ [range(10)] }", concurrency: 3}
    with: {function: fail_on, args: {value: "${ .item }", bad: [3, 7]}}
    retry: {max_attempts: 2, initial_interval: 10ms}
    on_error: continue
outputs: "${ .steps.check.output }"
"""
    )
    assert ok, output
    assert output == [0, 1, 2, None, 4, 5, 6, None, 8, 9]
    step = state.steps["items/check"]
    assert step.items is not None
    assert (step.items.total, step.items.completed, step.items.failed) == (10, 8, 2)
    failed = [sample for sample in step.item_samples if sample.status == "failed"]
    assert sorted(sample.index for sample in failed) == [3, 7]
    assert (
        "value 3 is not allowed" in failed[0].error.message
        or "value 7 is not allowed" in failed[0].error.message
    )
    assert state.items_processed == 10


async def test_for_each_failure_fails_the_step_by_default(engine: Engine) -> None:
    ok, error, state = await engine.run(
        """
id: strict
steps:
  - id: check
    kind: python
    for_each: {items: "${ [1, 2, 3] }", batch_size: 2}
    with: {function: fail_on, args: {value: "${ .item }", bad: [2]}}
    retry: {max_attempts: 1}
"""
    )
    assert not ok
    assert "1 of 3 items failed" in error["message"]
    assert state.steps["strict/check"].items.completed == 2


async def test_python_script_and_ai_steps(engine: Engine, http_server: TestServer, store: Store) -> None:
    http_server.route(
        "POST",
        "/v1/chat/completions",
        Reply(
            200,
            {
                "model": "tiny",
                "choices": [
                    {"message": {"role": "assistant", "content": "positive"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
            },
        ),
    )
    await store.connections.put(
        "llm", "openai", {"base_url": f"{http_server.url}/v1"}, {"api_key": "sk-test-secret-123"}
    )
    ok, output, state = await engine.run(
        """
id: kinds
connections: [llm]
steps:
  - id: sum
    kind: python
    with: {function: add, args: {a: 2, b: 3}}
  - id: scripted
    kind: script
    needs: [sum]
    with:
      code: |
        print("computing")
        result = {"tripled": input["value"] * 3}
      input: {value: "${ .steps.sum.output }"}
  - id: classify
    kind: ai
    connection: llm
    needs: [scripted]
    with: {model: tiny, prompt: "Classify ${ .steps.scripted.output.tripled }", max_tokens: 5}
outputs: {sum: "${ .steps.sum.output }", tripled: "${ .steps.scripted.output.tripled }", label: "${ .steps.classify.output.content }"}
"""
    )
    assert ok, output
    assert output == {"sum": 5, "tripled": 15, "label": "positive"}
    ai_call = http_server.calls("/v1/chat/completions")[0]
    assert ai_call.headers["Authorization"] == "Bearer sk-test-secret-123"
    assert ai_call.body["messages"][-1]["content"] == "Classify 15"
    metrics = await store.metrics.for_execution(state.execution_id)
    ai_metric = next(metric for metric in metrics if metric.kind == "ai")
    assert (ai_metric.tokens_prompt, ai_metric.tokens_completion) == (12, 1)
    logs = await store.logs.query(state.execution_id)
    assert any("computing" in log.message for log in logs)
    history = [
        event async for event in engine.client.get_workflow_handle(state.execution_id).fetch_history_events()
    ]
    assert "sk-test-secret-123" not in str(history)


async def test_delay_and_approval_wait_durably(engine: Engine) -> None:
    handle = await engine.start(
        """
id: approve
steps:
  - {id: pause, kind: delay, with: {duration: 200ms}}
  - id: sign_off
    kind: approval
    needs: [pause]
    with: {message: "Ship it?", timeout: 1h}
outputs: "${ .steps.sign_off.output }"
"""
    )
    for _ in range(100):
        state = await handle.query("state", result_type=ExecutionState)
        if state.steps["approve/sign_off"].status == "waiting":
            break
        await asyncio.sleep(0.1)
    assert state.status == "waiting"
    assert state.steps["approve/sign_off"].approval.message == "Ship it?"
    await handle.execute_update(
        "decide_approval", ApprovalDecision(step="sign_off", approved=True, by="ada", payload={"ticket": 7})
    )
    output = await handle.result()
    assert output["approved"] is True and output["by"] == "ada" and output["payload"] == {"ticket": 7}


async def test_approval_for_a_step_not_waiting_is_rejected(engine: Engine) -> None:
    from temporalio.client import WorkflowUpdateFailedError

    handle = await engine.start(
        """
id: gate
steps:
  - {id: sign_off, kind: approval, with: {timeout: 1h}}
"""
    )
    try:
        await handle.execute_update("decide_approval", ApprovalDecision(step="nope", approved=True))
        raise AssertionError("an approval for an unknown step was accepted")
    except WorkflowUpdateFailedError as error:
        assert "not waiting for approval" in str(error.cause)
    await handle.terminate("test done")


async def test_execution_config_continue_overrides_fail(engine: Engine, http_server: TestServer) -> None:
    http_server.route("GET", "/bad", Reply(400, {}))
    ok, output, state = await engine.run(
        f"""
id: override
steps:
  - {{id: bad, kind: http, with: {{url: "{http_server.url}/bad"}}}}
  - {{id: good, kind: set, with: {{v: 1}}}}
outputs: "${{ .steps.good.output.v }}"
""",
        config=ExecutionConfig(error_mode="continue"),
    )
    assert ok and output == 1
    assert state.steps["override/bad"].status == "failed"


async def test_expression_error_at_run_time_fails_the_step_clearly(engine: Engine) -> None:
    ok, error, state = await engine.run(
        """
id: badexpr
inputs: {type: object, properties: {n: {type: string}}}
steps:
  - {id: calc, kind: set, with: {v: "${ .inputs.n + 1 }"}}
""",
        {"n": "text"},
    )
    assert not ok
    assert error["category"] == "expression"
    assert "cannot be added" in error["message"]
    assert state.steps["badexpr/calc"].status == "failed"


async def test_large_for_each_runs_in_child_workflows(engine: Engine) -> None:
    ok, output, state = await engine.run(
        """
id: large
steps:
  - id: each
    kind: python
    for_each: {items: "${ [range(10000)] }", concurrency: 64, batch_size: 1}
    with: {function: noop}
outputs: {count: "${ .steps.each.output | length }"}
"""
    )
    assert ok, output
    assert output == {"count": 10000}
    assert state.items_processed == 10000
    assert state.steps["large/each"].items.completed == 10000
    history = [e async for e in engine.client.get_workflow_handle(state.execution_id).fetch_history_events()]
    children = [e for e in history if e.HasField("start_child_workflow_execution_initiated_event_attributes")]
    assert len(children) == 10
    assert len(history) < 1000
    assert json.dumps(output)
