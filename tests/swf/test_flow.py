"""Serverless Workflow plans on a real Temporal dev server: the behaviour the conformance kit does not
cover — loops, jumps, the context, retries, timeouts, functions, child workflows, connections — and
that an execution replays deterministically."""

from __future__ import annotations

import json
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from rte.executions import outcome
from rte.store import Store
from tests.conftest import Engine
from tests.support.http_server import Reply, TestServer
from workflows.interpreter import RunPlan
from workflows.plan import Plan
from workflows.source import parse_source
from workflows.state import ExecutionConfig, ExecutionState
from workflows.swf import WorkflowCatalog, compile_swf

HEADER = "document: {dsl: '1.0.0', namespace: test, name: %s, version: '0.1.0'}\n"


def swf(name: str, body: str, catalog: WorkflowCatalog | None = None) -> Plan:
    source, diagnostics = parse_source(HEADER % name + body)
    assert source is not None, diagnostics
    plan = compile_swf(source.data, source.positions, diagnostics, catalog=catalog)
    assert plan is not None, diagnostics
    return plan


async def run(
    engine: Engine, plan: Plan, params: dict[str, Any] | None = None, config: ExecutionConfig | None = None
) -> tuple[bool, Any, ExecutionState, list[str]]:
    handle: WorkflowHandle[Any, Any] = await engine.start(plan, params or {}, config)
    ok, result = await outcome(handle)
    state = await handle.query("state", result_type=ExecutionState)
    trail = await handle.query("trail", result_type=list[str])
    return ok, result, state, [path.rsplit("/", 1)[-1] for path in trail]


async def test_for_threads_each_output_into_the_next_iteration_and_stops_when_while_is_false(
    engine: Engine,
) -> None:
    plan = swf(
        "loop",
        """
do:
  - sum:
      for: {each: n, in: .numbers, at: i}
      while: .total < 6
      do:
        - add:
            set:
              total: ${ .total + $n }
              seen: ${ .seen + [$i] }
""",
    )
    ok, output, state, _ = await run(engine, plan, {"numbers": [1, 2, 3, 4, 5], "total": 0, "seen": []})
    assert ok, output
    assert output == {"total": 6, "seen": [0, 1, 2]}
    assert state.steps["do/0/sum"].items is not None and state.steps["do/0/sum"].items.completed == 3


async def test_export_builds_the_context_and_expressions_see_task_workflow_and_runtime(
    engine: Engine,
) -> None:
    plan = swf(
        "context",
        """
do:
  - first:
      set: {value: 41}
      export: {as: '${ $context + {answer: (.value + 1)} }'}
  - second:
      set:
        answer: ${ $context.answer }
        task: ${ $task.name }
        reference: ${ $task.reference }
        workflow: ${ $workflow.definition.document.name }
        who: ${ $workflow.input.who }
        runtime: ${ $runtime.name }
""",
    )
    ok, output, _, _ = await run(engine, plan, {"who": "ada"})
    assert ok, output
    assert output == {
        "answer": 42,
        "task": "second",
        "reference": "/do/1/second",
        "workflow": "context",
        "who": "ada",
        "runtime": "runtime-engine",
    }


async def test_workflow_input_from_output_as_and_a_false_if_pass_data_through(engine: Engine) -> None:
    plan = swf(
        "shipping",
        """
input: {from: .order}
do:
  - express: {if: .express, set: {shipping: fast}}
  - price: {set: {total: '${ .amount + 5 }'}}
output: {as: .total}
""",
    )
    ok, output, state, trail = await run(engine, plan, {"order": {"amount": 10, "express": False}})
    assert ok and output == 15
    assert state.steps["do/0/express"].status == "skipped"
    assert trail == ["price"]


async def test_then_jumps_back_until_a_switch_exits(engine: Engine) -> None:
    plan = swf(
        "count",
        """
do:
  - start: {set: {count: 0}}
  - increment: {set: {count: '${ .count + 1 }'}}
  - check:
      switch:
        - again: {when: .count < 3, then: increment}
        - done: {then: exit}
  - never: {set: {count: -1}}
""",
    )
    ok, output, state, trail = await run(engine, plan)
    assert ok and output == {"count": 3}
    assert trail == ["start", "increment", "check", "increment", "check", "increment", "check"]
    assert state.steps["do/3/never"].status == "pending"


async def test_a_jump_loop_without_an_exit_stops_with_a_clear_error(engine: Engine) -> None:
    plan = swf("spin", "do:\n  - spin: {set: {x: 1}, then: spin}\n")
    ok, error, _, trail = await run(engine, plan, config=ExecutionConfig(max_transitions=300))
    assert not ok and len(trail) == 300
    assert "made 300 transitions" in error["details"]["problem"]["detail"]
    assert error["details"]["problem"]["type"].endswith("/errors/runtime")


async def test_fork_without_compete_outputs_every_branch_in_branch_order(engine: Engine) -> None:
    plan = swf(
        "fork",
        """
do:
  - all:
      fork:
        branches:
          - a: {set: {branch: a}}
          - b: {wait: {milliseconds: 50}, output: {as: '{branch: "b"}'}}
          - c: {set: {branch: c}}
""",
    )
    ok, output, _, _ = await run(engine, plan)
    assert ok and output == [{"branch": "a"}, {"branch": "b"}, {"branch": "c"}]


async def test_try_retries_a_failing_call_with_backoff_until_it_succeeds(
    engine: Engine, http_server: TestServer
) -> None:
    http_server.route(
        "GET", "/flaky", Reply(503, {"busy": True}), Reply(503, {"busy": True}), Reply(200, {"ok": True})
    )
    plan = swf(
        "retrying",
        f"""
do:
  - call:
      try:
        - get: {{call: http, with: {{method: get, endpoint: "{http_server.url}/flaky"}}}}
      catch:
        errors: {{with: {{type: https://serverlessworkflow.io/spec/1.0.0/errors/communication, status: 503}}}}
        retry:
          delay: {{milliseconds: 100}}
          backoff: {{exponential: {{}}}}
          limit: {{attempt: {{count: 3}}}}
""",
    )
    ok, output, state, trail = await run(engine, plan)
    assert ok and output == {"ok": True}
    assert len(http_server.calls("/flaky")) == 3
    assert trail == ["call", "get", "get", "get"] and state.steps["do/0/call"].attempts == 3
    keys = {call.headers["Idempotency-Key"] for call in http_server.calls("/flaky")}
    assert len(keys) == 3  # each run of the task is its own request


async def test_when_retries_run_out_catch_do_handles_the_error(
    engine: Engine, http_server: TestServer
) -> None:
    http_server.route("GET", "/down", Reply(503, {"busy": True}))
    plan = swf(
        "giving-up",
        f"""
do:
  - call:
      try:
        - get: {{call: http, with: {{method: get, endpoint: "{http_server.url}/down"}}}}
      catch:
        errors: {{with: {{status: 503}}}}
        as: failure
        retry: {{delay: {{milliseconds: 50}}, limit: {{attempt: {{count: 2}}}}}}
        do:
          - note: {{set: {{status: '${{ $failure.status }}', instance: '${{ $failure.instance }}'}}}}
""",
    )
    ok, output, _, _ = await run(engine, plan)
    assert ok and output == {"status": 503, "instance": "/do/0/call/try/0/get"}
    assert len(http_server.calls("/down")) == 2


async def test_without_catch_do_an_error_whose_retries_ran_out_is_raised_again(
    engine: Engine, http_server: TestServer
) -> None:
    http_server.route("GET", "/gone", Reply(503, {"busy": True}))
    plan = swf(
        "rethrow",
        f"""
do:
  - call:
      try:
        - get: {{call: http, with: {{method: get, endpoint: "{http_server.url}/gone"}}}}
      catch:
        retry: {{delay: {{milliseconds: 50}}, backoff: {{linear: {{}}}}, limit: {{attempt: {{count: 2}}}}}}
""",
    )
    ok, error, _, _ = await run(engine, plan)
    assert not ok and error["details"]["problem"]["status"] == 503
    assert len(http_server.calls("/gone")) == 2


@pytest.mark.parametrize(
    ("clause", "caught"), [("when: .status == 409", True), ("exceptWhen: .status == 409", False)]
)
async def test_catch_when_and_except_when_decide_whether_an_error_is_caught(
    engine: Engine, clause: str, caught: bool
) -> None:
    plan = swf(
        "conflict",
        f"""
do:
  - guarded:
      try:
        - refuse:
            raise:
              error: {{type: https://example.com/errors/conflict, status: 409, title: Conflict}}
      catch:
        {clause}
        do:
          - recover: {{set: {{recovered: true}}}}
""",
    )
    ok, result, state, _ = await run(engine, plan)
    assert ok is caught
    if caught:
        assert result == {"recovered": True}
    else:
        assert result["details"]["problem"] == {
            "type": "https://example.com/errors/conflict",
            "status": 409,
            "title": "Conflict",
            "instance": "/do/0/guarded/try/0/refuse",
        }
        assert result["category"] == "raised" and state.error_count == 1


async def test_an_error_caught_without_retry_or_handler_is_swallowed(engine: Engine) -> None:
    plan = swf(
        "swallow",
        """
do:
  - quiet:
      try:
        - fail: {raise: {error: {type: https://example.com/ignored, status: 400}}}
      catch: {errors: {with: {status: 400}}}
  - after: {set: {went_on: true, input: '${ . }'}}
""",
    )
    ok, output, state, _ = await run(engine, plan, {"given": 1})
    assert ok and output == {"went_on": True, "input": {"given": 1}}
    assert (
        state.steps["do/0/quiet/try/0/fail"].status == "failed"
        and state.steps["do/0/quiet"].status == "completed"
    )


async def test_a_task_timeout_raises_the_spec_timeout_error_which_try_can_catch(engine: Engine) -> None:
    plan = swf(
        "slow",
        """
do:
  - bounded:
      try:
        - nap: {wait: {seconds: 30}, timeout: {after: {milliseconds: 200}}}
      catch:
        errors: {with: {type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout}}
        as: late
        do:
          - report: {set: {status: '${ $late.status }', instance: '${ $late.instance }'}}
""",
    )
    ok, output, _, _ = await run(engine, plan)
    assert ok and output == {"status": 408, "instance": "/do/0/bounded/try/0/nap"}


async def test_wait_sleeps_on_a_durable_timer_and_passes_its_input_on(engine: Engine) -> None:
    plan = swf("pause", "do:\n  - pause: {wait: PT0.2S}\n")
    handle = await engine.start(plan, {"kept": True})
    ok, output = await outcome(handle)
    assert ok and output == {"kept": True}
    events = [event async for event in handle.fetch_history_events()]
    assert any(event.HasField("timer_started_event_attributes") for event in events)


async def test_call_of_a_registered_python_function_and_of_a_use_function(engine: Engine) -> None:
    plan = swf(
        "functions",
        """
use:
  functions:
    twice:
      set: {value: '${ .n + .n }'}
do:
  - sum: {call: add, with: {a: '${ .x }', b: 2}}
  - double: {call: twice, with: {n: '${ . }'}}
""",
    )
    ok, output, state, trail = await run(engine, plan, {"x": 3})
    assert ok and output == {"value": 10}
    assert trail == ["sum", "double", "twice"]
    assert state.steps["do/0/sum"].kind == "python" and state.steps["do/1/double/twice"].status == "completed"


async def test_run_workflow_runs_the_childs_plan_as_a_child_workflow(engine: Engine) -> None:
    catalog = WorkflowCatalog()
    catalog.add(swf("greeter", "do:\n  - greet: {set: {greeting: '${ \"hello \" + .name }'}}\n"))
    plan = swf(
        "parent",
        """
do:
  - delegate:
      run:
        workflow: {namespace: test, name: greeter, version: '0.1.0', input: {name: '${ .who }'}}
""",
        catalog,
    )
    ok, output, state, _ = await run(engine, plan, {"who": "ada"})
    assert ok and output == {"greeting": "hello ada"}
    child = engine.client.get_workflow_handle(f"{state.execution_id}/do/0/delegate")
    assert (await child.describe()).status.name == "COMPLETED"


async def test_run_workflow_without_await_starts_the_child_and_goes_on(engine: Engine) -> None:
    catalog = WorkflowCatalog()
    catalog.add(swf("napper", "do:\n  - nap: {wait: {milliseconds: 300}}\n"))
    plan = swf(
        "starter",
        "do:\n  - start: {run: {workflow: {namespace: test, name: napper, version: '0.1.0'}, await: false}}\n",
        catalog,
    )
    ok, output, state, _ = await run(engine, plan, {"n": 1})
    assert ok and output == {"n": 1}
    child = engine.client.get_workflow_handle(f"{state.execution_id}/do/0/start")
    assert await child.result() == {"n": 1}  # no `input`: the child gets the task's input


async def test_a_failing_child_fails_the_parent_with_the_childs_error(engine: Engine) -> None:
    catalog = WorkflowCatalog()
    catalog.add(
        swf("broken", "do:\n  - fail: {raise: {error: {type: https://example.com/broken, status: 500}}}\n")
    )
    plan = swf(
        "caller",
        "do:\n  - call: {run: {workflow: {namespace: test, name: broken, version: latest}}}\n",
        catalog,
    )
    ok, error, state, _ = await run(engine, plan)
    assert not ok
    assert error["details"]["problem"]["type"] == "https://example.com/broken"
    assert state.steps["do/0/call"].status == "failed"


async def test_bearer_token_from_secrets_is_added_by_the_worker_from_its_connection(
    engine: Engine, store: Store, http_server: TestServer
) -> None:
    config = {"allowed_origins": [http_server.url]}  # where the credentials may go (docs/security.md)
    await store.connections.put("petstore", "bearer", config, {"token": "tok-never-in-history"})
    http_server.route("GET", "/pets", Reply(200, [{"id": 1}]))
    plan = swf(
        "secret",
        f"""
use:
  secrets: [petstore]
do:
  - list:
      call: http
      with:
        method: get
        endpoint:
          uri: {http_server.url}/pets
          authentication: {{bearer: {{token: '${{ $secrets.petstore.token }}'}}}}
""",
    )
    assert plan.connections == ("petstore",)
    handle = await engine.start(plan, {})
    ok, output = await outcome(handle)
    assert ok and output == [{"id": 1}]
    assert http_server.calls("/pets")[0].headers["Authorization"] == "Bearer tok-never-in-history"
    history = [event async for event in handle.fetch_history_events()]
    assert "tok-never-in-history" not in "".join(str(event) for event in history)


async def test_inline_credentials_are_sent_but_hidden_from_the_step_state(
    engine: Engine, http_server: TestServer
) -> None:
    http_server.route("GET", "/me", Reply(200, {"me": True}))
    plan = swf(
        "inline",
        f"""
do:
  - me:
      call: http
      with:
        method: get
        endpoint: {{uri: "{http_server.url}/me", authentication: {{bearer: {{token: '${{ .token }}'}}}}}}
""",
    )
    ok, _, state, _ = await run(engine, plan, {"token": "tok-from-input"})
    assert ok
    assert http_server.calls("/me")[0].headers["Authorization"] == "Bearer tok-from-input"
    assert state.steps["do/0/me"].input["headers"]["Authorization"] == "***"


async def test_a_task_input_schema_is_checked_before_the_task_runs(engine: Engine) -> None:
    plan = swf(
        "checked",
        """
do:
  - typed:
      input: {schema: {document: {type: object, required: [id], properties: {id: {type: integer}}}}}
      set: {ok: true}
""",
    )
    ok, error, _, _ = await run(engine, plan, {"id": "seven"})
    assert not ok
    problem = error["details"]["problem"]
    assert problem["type"].endswith("/errors/validation") and problem["status"] == 400
    assert "/id" in problem["detail"] and problem["instance"] == "/do/0/typed"


async def test_an_execution_with_loops_forks_retries_and_timers_replays_deterministically(
    engine: Engine, http_server: TestServer
) -> None:
    http_server.route("GET", "/once", Reply(500, {}), Reply(200, {"n": 1}))
    plan = swf(
        "replayed",
        f"""
do:
  - each:
      for: {{each: x, in: '[1, 2]'}}
      do:
        - both:
            fork:
              branches:
                - left: {{set: {{x: '${{ $x }}'}}}}
                - right: {{wait: {{milliseconds: 10}}}}
  - fetch:
      try:
        - get: {{call: http, with: {{method: get, endpoint: "{http_server.url}/once"}}}}
      catch:
        retry: {{delay: {{milliseconds: 10}}, limit: {{attempt: {{count: 2}}}}}}
""",
    )
    handle = await engine.start(plan, {})
    ok, output = await outcome(handle)
    assert ok and output == {"n": 1}
    history = await handle.fetch_history()
    replayer = Replayer(workflows=[RunPlan], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None
    assert json.dumps(output) == '{"n": 1}'
