"""Serverless Workflow plans pass the same debugger boundaries: a breakpoint on a task, its input
edited while paused, then continue."""

from __future__ import annotations

from rte.executions import outcome
from tests.conftest import Engine
from tests.debug.support import command, edit, wait_paused
from tests.swf.test_flow import swf
from workflows.state import Breakpoint, ExecutionConfig


async def test_breakpoint_and_input_edit_on_a_serverless_workflow_task(engine: Engine) -> None:
    plan = swf(
        "swfdebug",
        """
do:
  - first:
      set: {value: 41}
  - second:
      set:
        answer: ${ .value + 1 }
""",
    )
    second = next(step for step in plan.walk() if step.id == "second")
    handle = await engine.start(plan, None, ExecutionConfig(breakpoints=[Breakpoint(step=second.path)]))
    state = await wait_paused(handle)
    assert state.debug.paused is not None and state.debug.paused.step_path == second.path
    assert state.debug.paused.next_input == {"value": 41}
    await edit(handle, "input.value", 99)
    await command(handle, "continue")
    assert await outcome(handle) == (True, {"answer": 100})
