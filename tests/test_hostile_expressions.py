"""A hostile user's expressions on the real dev server: each runaway, quadratic, huge or recursive
program fails its own step with a clear `expression` error within seconds, while a canary execution
on the same worker keeps its normal latency; no workflow task ever fails."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from rte.executions import outcome
from tests.conftest import Engine

CANARY = """
id: canary
steps:
  - {id: a, kind: set, with: {n: 1}}
  - {id: b, kind: python, needs: [a], with: {function: noop}}
  - {id: c, kind: set, needs: [b], with: {done: true}}
outputs: "${ .steps.c.output.done }"
"""


def attack(program: str) -> str:
    return f"""
id: attack
inputs: {{type: object}}
steps:
  - id: evil
    kind: transform
    with: {{input: "${{ .inputs }}", jq: {program!r}}}
"""


async def canary_latency(engine: Engine, runs: int = 3) -> float:
    timings = []
    for _ in range(runs):
        started = time.monotonic()
        ok, output, _state = await engine.run(CANARY)
        assert ok and output is True
        timings.append(time.monotonic() - started)
    return statistics.median(timings)


async def workflow_task_failures(engine: Engine, execution_id: str) -> int:
    handle = engine.client.get_workflow_handle(execution_id)
    events = [event async for event in handle.fetch_history_events()]
    return sum(1 for event in events if event.HasField("workflow_task_failed_event_attributes"))


@pytest.mark.parametrize(
    ("name", "program", "params", "copies"),
    [
        ("endless recursion", "def f: f; f", {}, 4),  # four at once: more than the guard's pool
        ("array subtraction on a large array", ". - . | length", {"xs": list(range(12_000))}, 2),
        ("a huge range", "[range(1e9)] | length", {}, 2),
        ("deep recursion that grows", "def f: [f]; f", {}, 2),
    ],
)
async def test_a_hostile_expression_fails_its_step_quickly_and_a_canary_keeps_its_latency(
    engine: Engine, name: str, program: str, params: dict[str, object], copies: int
) -> None:
    normal = await canary_latency(engine)
    data = params.get("xs", params)
    source = attack(program.replace(". - .", ".xs - .xs") if "xs" in params else program)
    started = time.monotonic()
    handles = [await engine.start(source, {"xs": data} if "xs" in params else {}) for _ in range(copies)]
    during = await canary_latency(engine)
    results = await asyncio.gather(*(outcome(handle) for handle in handles))
    took = time.monotonic() - started
    for ok, error in results:
        assert not ok
        assert error["category"] == "expression", error
        assert "limit" in error["message"], error
    for handle in handles:
        assert await workflow_task_failures(engine, handle.id) == 0
    print(
        f"\n{name} x{copies}: attacks failed in {took:.1f} s; canary median {normal * 1000:.0f} ms before, "
        f"{during * 1000:.0f} ms during ({during / normal:.2f}x)"
    )
    assert took < 30, f"{copies} runaways took {took:.1f} s to fail"
    # Generous for a shared 2-core machine; before the boundary the canary went from 0.4 s to 9-18 s.
    assert during < max(3 * normal, normal + 2.0), (normal, during)
