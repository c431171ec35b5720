"""The critical path of an execution as it ran: the chain of steps, linked by `needs`, whose real
durations add up to the most. Skipped steps (and steps that never started) are not on it; a step
whose need was skipped hangs on whatever that skipped step itself waited for.
"""

from __future__ import annotations

from datetime import datetime

from workflows.artifacts import block_graph
from workflows.graph import Graph, critical_path, topological_levels
from workflows.plan import Plan
from workflows.state import ExecutionState, StepStatus


def actual_critical_path(plan: Plan, state: ExecutionState, now: datetime) -> list[str]:
    """Paths of the top-level steps on the execution's critical path (a running step counts until `now`)."""
    graph = block_graph(plan.root)
    paths = {step.id: step.path for step in plan.root.steps}
    duration_ms: dict[str, float] = {}
    for step_id, path in paths.items():
        step = state.steps.get(path)
        if step is None or step.started_at is None or step.status in (StepStatus.SKIPPED, StepStatus.PENDING):
            continue
        ended = step.ended_at or now
        duration_ms[step_id] = max((ended - step.started_at).total_seconds() * 1000, 0.0)
    ran = Graph.build(
        (node, _ran_upstream(graph, node, duration_ms)) for node in graph.order if node in duration_ms
    )
    return [paths[node] for node in critical_path(ran, topological_levels(ran).levels, duration_ms)]


def _ran_upstream(graph: Graph, node: str, ran: dict[str, float]) -> list[str]:
    """The steps that ran which `node` waited for, looking through needs that did not run."""
    found: list[str] = []
    seen: set[str] = set()
    stack = list(reversed(graph.needs[node]))
    while stack:
        upstream = stack.pop()
        if upstream in seen:
            continue
        seen.add(upstream)
        if upstream in ran:
            found.append(upstream)
        else:
            stack.extend(reversed(graph.needs[upstream]))
    return found
