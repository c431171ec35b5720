"""The session's replay check can fail: a history replayed against different workflow code is
reported as non-deterministic, and against the real interpreter it is not."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from tests.conftest import Engine
from workflows.interpreter import RunPlan


@workflow.defn(name="RunPlan")
class ChangedInterpreter:
    """What a careless change would be: the same workflow type, other commands."""

    @workflow.run
    async def run(self, run_input: Any) -> Any:
        await workflow.sleep(timedelta(seconds=1))
        return None


async def test_a_history_replays_against_the_interpreter_and_not_against_changed_code(engine: Engine) -> None:
    handle = await engine.start(
        "id: replayed\nsteps:\n  - {id: a, kind: python, with: {function: noop}}\n  - {id: b, kind: set, needs: [a], with: {x: 1}}\n"
    )
    await handle.result()
    history = await handle.fetch_history()
    real = Replayer(workflows=[RunPlan], data_converter=pydantic_data_converter)
    assert (await real.replay_workflow(history, raise_on_replay_failure=False)).replay_failure is None
    changed = Replayer(
        workflows=[ChangedInterpreter],
        data_converter=pydantic_data_converter,
        workflow_runner=UnsandboxedWorkflowRunner(),  # a class defined in a test module
    )
    failure = (await changed.replay_workflow(history, raise_on_replay_failure=False)).replay_failure
    assert failure is not None and "nondeterminism" in str(failure).lower()
