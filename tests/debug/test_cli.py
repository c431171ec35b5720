"""`rte debug` and `rte recover` end to end: real processes against a paused execution."""

from __future__ import annotations

import json

from temporalio.client import Client

from rte.config import Settings
from rte.executions import outcome
from tests.conftest import Engine
from tests.debug.support import wait_for, wait_paused
from tests.test_cli import _env, _rte
from workflows.state import Breakpoint, ExecutionConfig

SOURCE = """
id: clidebug
steps:
  - {id: a, kind: python, with: {function: add, args: {a: 1, b: 2}}}
  - {id: b, kind: python, needs: [a], with: {function: fail_on, args: {value: "${ .steps.a.output }", bad: [3]}}, on_error: pause}
outputs: {b: "${ .steps.b.output }"}
"""


async def test_debug_and_recover_commands(client: Client, engine: Engine, settings: Settings) -> None:
    env = _env(client, engine, settings)
    handle = await engine.start(SOURCE, config=ExecutionConfig(breakpoints=[Breakpoint(step="b")]))
    await wait_paused(handle)
    shown = await _rte("debug", "status", handle.id, env=env)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert (
        status["debug"]["paused"]["step_path"] == "clidebug/b"
        and status["scope"]["steps"]["a"]["output"] == 3
    )
    evaluated = await _rte("debug", "eval", handle.id, ".input.args.value * 2", env=env)
    assert (evaluated.returncode, json.loads(evaluated.stdout)) == (0, 6)
    refused = await _rte("debug", "run-to", handle.id, "ghost", env=env)
    assert refused.returncode == 1 and "unknown step 'ghost'" in refused.stderr
    continued = await _rte("debug", "continue", handle.id, env=env)
    assert continued.returncode == 0, continued.stderr
    await wait_for(handle, lambda state: state.steps["clidebug/b"].awaiting_decision)
    decided = await _rte(
        "recover",
        "decide",
        handle.id,
        "b",
        "retry",
        "--input",
        '{"function": "add", "args": {"a": 3, "b": 4}}',
        env=env,
    )
    assert decided.returncode == 0, decided.stderr
    assert await outcome(handle) == (True, {"b": 7})

    failing = await engine.start(SOURCE)
    await wait_for(failing, lambda state: state.steps["clidebug/b"].awaiting_decision)
    assert (await _rte("recover", "decide", failing.id, "b", "fail", env=env)).returncode == 0
    assert (await outcome(failing))[0] is False
    resumed = await _rte("recover", "resume", failing.id, "no-such-execution", env=env)
    assert resumed.returncode == 1
    lines = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert lines[0]["ok"] and lines[0]["new_execution_id"] and not lines[1]["ok"]
    replayed = await _rte("debug", "replay", handle.id, "--at", "1", env=env)
    assert replayed.returncode == 0, replayed.stderr
    assert json.loads(replayed.stdout)[0]["step_id"] == "b"
