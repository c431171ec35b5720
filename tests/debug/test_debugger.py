"""The step debugger on a real dev server: breakpoints, every command, scope, evaluate and edits."""

from __future__ import annotations

import asyncio
import time

import pytest
from temporalio.client import WorkflowUpdateFailedError

from rte import temporal as sa
from rte.debug_evaluation import evaluate_at_pause
from rte.executions import outcome
from tests.conftest import Engine
from tests.debug.support import breakpoint, command, edit, state_of, wait_for, wait_paused
from workflows.state import (
    Breakpoint,
    BreakpointChange,
    EvaluateRequest,
    EvaluateResult,
    ExecutionConfig,
    ExecutionStatus,
    StepStatus,
)

CHAIN = """
id: chain
inputs: {type: object, properties: {n: {type: integer}}}
steps:
  - {id: a, kind: python, with: {function: add, args: {a: "${ .inputs.n }", b: 1}}}
  - {id: b, kind: python, needs: [a], with: {function: add, args: {a: "${ .steps.a.output }", b: 10}}}
  - {id: c, kind: python, needs: [b], with: {function: add, args: {a: "${ .steps.b.output }", b: 100}}}
outputs: {c: "${ .steps.c.output }"}
"""

LOOP = """
id: loop
steps:
  - {id: first, kind: set, with: {v: 1}}
  - id: each
    kind: python
    needs: [first]
    for_each: {items: "${ [range(100) | {n: ., amount: (. * 10)}] }", concurrency: 4}
    with: {function: add, args: {a: "${ .item.amount }", b: 0}}
  - {id: last, kind: python, needs: [each], with: {function: add, args: {a: 1, b: 1}}}
outputs: {sum: "${ .steps.each.output | add }", last: "${ .steps.last.output }"}
"""


def debug(*breakpoints: Breakpoint) -> ExecutionConfig:
    return ExecutionConfig(debug=True, breakpoints=list(breakpoints))


async def test_breakpoint_before_a_step_pauses_with_position_stack_scope_and_next_input(
    engine: Engine,
) -> None:
    handle = await engine.start(CHAIN, {"n": 1}, debug(Breakpoint(step="b")))
    state = await wait_paused(handle)
    paused = state.debug.paused
    assert paused is not None
    assert (paused.step_path, paused.when, paused.reason) == ("chain/b", "before", "breakpoint bp1")
    assert [frame.kind for frame in paused.call_stack] == ["workflow", "step"]
    assert paused.next_input == {"function": "add", "args": {"a": 2, "b": 10}}
    assert state.status == ExecutionStatus.PAUSED
    assert state.steps["chain/b"].status == StepStatus.PAUSED
    assert state.steps["chain/a"].status == StepStatus.COMPLETED
    scope = await handle.query("debug_scope", result_type=dict)
    assert scope["inputs"] == {"n": 1} and scope["steps"]["a"]["output"] == 2
    description = await handle.describe()
    assert description.typed_search_attributes.get(sa.DEBUG_STATE) == "paused"
    await command(handle, "continue")
    ok, output = await outcome(handle)
    assert ok and output == {"c": 112}


async def test_step_over_runs_one_step_and_pauses_again(engine: Engine) -> None:
    handle = await engine.start(CHAIN, {"n": 1}, debug(Breakpoint(step="a")))
    await wait_paused(handle)
    await command(handle, "step_over")
    state = await wait_for(handle, lambda s: s.debug.paused is not None and s.debug.paused.when == "after")
    assert state.debug.paused is not None and state.debug.paused.step_path == "chain/a"
    assert state.debug.paused.reason == "step_over"
    assert state.steps["chain/b"].status == StepStatus.PENDING
    await command(handle, "step_over")
    state = await wait_for(
        handle, lambda s: s.debug.paused is not None and s.debug.paused.step_path == "chain/b"
    )
    assert state.debug.paused is not None and state.debug.paused.when == "before"
    await command(handle, "continue")
    assert (await outcome(handle)) == (True, {"c": 112})


async def test_run_to_and_pause_and_step_out(engine: Engine) -> None:
    handle = await engine.start(LOOP, None, debug(Breakpoint(step="first")))
    await wait_paused(handle)
    await command(handle, "step_into")  # after 'first'
    await wait_for(handle, lambda s: s.debug.paused is not None and s.debug.paused.when == "after")
    await command(handle, "step_into")  # before 'each' (the step)
    await wait_for(handle, lambda s: s.debug.paused is not None and s.debug.paused.step_path == "loop/each")
    await command(handle, "step_into")  # into the for_each: an item
    state = await wait_for(
        handle, lambda s: s.debug.paused is not None and s.debug.paused.item_index is not None
    )
    assert state.debug.paused is not None
    assert [frame.kind for frame in state.debug.paused.call_stack] == ["workflow", "step", "item"]
    first_item = state.debug.paused.item_index
    await command(handle, "step_into")  # item by item (the items run 4 at a time: any next one)
    state = await wait_for(
        handle,
        lambda s: (
            s.debug.paused is not None
            and s.debug.paused.item_index is not None
            and (s.debug.paused.item_index, s.debug.paused.when) != (first_item, "before")
        ),
    )
    await command(handle, "step_out")  # out of the items: the for_each step's end
    state = await wait_for(handle, lambda s: s.debug.paused is not None and s.debug.paused.item_index is None)
    assert state.debug.paused is not None
    assert (state.debug.paused.step_path, state.debug.paused.when) == ("loop/each", "after")
    assert state.steps["loop/each"].items is not None and state.steps["loop/each"].items.completed == 100
    await command(handle, "run_to", "last")
    state = await wait_for(
        handle, lambda s: s.debug.paused is not None and s.debug.paused.step_path == "loop/last"
    )
    assert state.debug.paused is not None and state.debug.paused.reason == "run_to loop/last"
    await command(handle, "continue")
    assert (await outcome(handle)) == (True, {"sum": 49500, "last": 2})


async def test_attach_and_pause_a_running_execution_at_the_next_boundary(engine: Engine) -> None:
    handle = await engine.start(
        """
id: attach
steps:
  - {id: slow, kind: python, with: {function: slow_double, args: {value: 2, seconds: 1.5}}}
  - {id: next, kind: python, needs: [slow], with: {function: add, args: {a: "${ .steps.slow.output }", b: 1}}}
outputs: "${ .steps.next.output }"
"""
    )
    await wait_for(handle, lambda s: s.steps["attach/slow"].status == StepStatus.RUNNING)
    await command(handle, "pause")
    state = await wait_paused(handle)
    assert state.debug.paused is not None
    assert (state.debug.paused.step_path, state.debug.paused.when, state.debug.paused.reason) == (
        "attach/slow",
        "after",
        "pause",
    )
    assert [entry.action for entry in state.debug.audit] == ["pause"]
    await command(handle, "continue")
    assert (await outcome(handle)) == (True, 5)


async def test_conditional_breakpoint_on_the_37th_of_100_items(engine: Engine) -> None:
    handle = await engine.start(LOOP, None, debug(Breakpoint(step="each", condition=".item.amount == 360")))
    state = await wait_paused(handle)
    paused = state.debug.paused
    assert paused is not None and paused.item_index == 36
    assert paused.next_input == {"function": "add", "args": {"a": 360, "b": 0}}
    result = await handle.query(
        "debug_evaluate", EvaluateRequest(expression=".item.n + .index"), result_type=EvaluateResult
    )
    assert result.ok and result.value == 72
    await command(handle, "continue")
    assert (await outcome(handle)) == (True, {"sum": 49500, "last": 2})
    final = await state_of(handle)
    assert [b.hits for b in final.debug.breakpoints] == [1]


async def test_breakpoint_limited_to_items_and_edit_of_the_item_before_it_runs(engine: Engine) -> None:
    handle = await engine.start(LOOP, None, debug(Breakpoint(step="each", items=[5])))
    state = await wait_paused(handle)
    assert state.debug.paused is not None and state.debug.paused.item_index == 5
    state = await edit(handle, "input.args.a", 1000)
    assert state.debug.paused is not None and state.debug.paused.next_input["args"]["a"] == 1000
    entry = state.debug.audit[-1]
    assert (entry.by, entry.action, entry.target, entry.old, entry.new) == (
        "tester",
        "edit",
        "input.args.a",
        50,
        1000,
    )
    await command(handle, "continue")
    ok, output = await outcome(handle)
    assert ok and output["sum"] == 49500 - 50 + 1000


async def test_breakpoints_added_disabled_enabled_and_removed_while_running(engine: Engine) -> None:
    handle = await engine.start(CHAIN, {"n": 1}, debug(Breakpoint(step="a")))
    await wait_paused(handle)
    state = await breakpoint(
        handle, BreakpointChange(action="add", breakpoint=Breakpoint(step="c", when="after"))
    )
    assert [b.id for b in state.debug.breakpoints] == ["bp1", "bp2"]
    state = await breakpoint(handle, BreakpointChange(action="disable", id="bp2"))
    assert state.debug.breakpoints[1].enabled is False
    state = await breakpoint(handle, BreakpointChange(action="enable", id="bp2"))
    assert state.debug.breakpoints[1].enabled is True
    state = await breakpoint(handle, BreakpointChange(action="remove", id="bp1"))
    assert [b.id for b in state.debug.breakpoints] == ["bp2"]
    await command(handle, "continue")
    state = await wait_for(
        handle, lambda s: s.debug.paused is not None and s.debug.paused.step_path == "chain/c"
    )
    assert state.debug.paused is not None and state.debug.paused.when == "after"
    await command(handle, "continue")
    assert (await outcome(handle)) == (True, {"c": 112})


async def test_edit_a_step_output_changes_what_later_steps_see(engine: Engine) -> None:
    handle = await engine.start(CHAIN, {"n": 1}, debug(Breakpoint(step="b")))
    await wait_paused(handle)
    await edit(handle, "steps.a.output", 50)  # b has already evaluated its input: edit it as well
    await edit(handle, "input.args.a", 50)
    await command(handle, "continue")
    assert (await outcome(handle)) == (True, {"c": 160})


async def test_evaluate_endless_or_huge_expression_fails_fast_and_the_worker_stays_healthy(
    engine: Engine,
) -> None:
    handle = await engine.start(CHAIN, {"n": 1}, debug(Breakpoint(step="b")))
    await wait_paused(handle)
    async def evaluate(expression: str) -> EvaluateResult:
        return await evaluate_at_pause(
            lambda name, argument, result_type: handle.query(
                name, *([argument] if argument is not None else []), result_type=result_type
            ),
            expression,
        )

    for expression in ("[repeat(1)]", "[range(100000000)]", "def f: f; f", "env"):
        started = time.monotonic()
        result = await evaluate(expression)
        assert not result.ok and result.error, expression
        assert time.monotonic() - started < 10, expression
    # Cheap on the paused scope: answered by the workflow's own query; costly: by the guarded evaluator.
    cheap = await handle.query(
        "debug_evaluate", EvaluateRequest(expression=".steps.a.output + 2"), result_type=EvaluateResult
    )
    assert cheap.ok and cheap.value == 4
    result = await evaluate(".steps.a.output * 2")
    assert result.ok and result.value == 4
    await command(handle, "continue")
    assert (await outcome(handle)) == (True, {"c": 112})


@pytest.mark.parametrize(
    ("action", "target", "message"),
    [
        ("step_over", None, "cannot step_over while the execution is running"),
        ("continue", None, "cannot continue while the execution is running"),
        ("run_to", "nowhere", "unknown step 'nowhere'"),
    ],
)
async def test_invalid_commands_are_rejected_and_change_nothing(
    engine: Engine, action: str, target: str | None, message: str
) -> None:
    handle = await engine.start(
        """
id: busy
steps:
  - {id: slow, kind: python, with: {function: slow_double, args: {value: 2, seconds: 1}}}
"""
    )
    await wait_for(handle, lambda s: s.steps["busy/slow"].status == StepStatus.RUNNING)
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await command(handle, action, target)
    assert message in str(failure.value.cause)
    state = await state_of(handle)
    assert state.debug.audit == [] and state.debug.enabled is False
    assert (await outcome(handle)) == (True, {"slow": 4})


async def test_unknown_breakpoint_and_edit_while_running_are_rejected(engine: Engine) -> None:
    handle = await engine.start(CHAIN, {"n": 1}, debug(Breakpoint(step="c")))
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await breakpoint(handle, BreakpointChange(action="add", breakpoint=Breakpoint(step="nope")))
    assert "unknown step 'nope'" in str(failure.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await breakpoint(
            handle, BreakpointChange(action="add", breakpoint=Breakpoint(step="a", condition="env"))
        )
    assert "'env' is not allowed" in str(failure.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await breakpoint(handle, BreakpointChange(action="remove", id="bp9"))
    assert "no breakpoint 'bp9'" in str(failure.value.cause)
    await wait_paused(handle)
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await edit(handle, "nothing.here", 1)
    assert "unknown variable 'nothing'" in str(failure.value.cause)
    await command(handle, "continue")
    assert (await outcome(handle)) == (True, {"c": 112})
    await asyncio.sleep(0)
