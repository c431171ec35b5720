"""Graph analysis of a DAG of steps: cycles, topological levels, upstream sets, the critical path,
and switch gating (which branches a switch can ever choose).

Everything is linear in steps + edges except upstream sets, which are bitsets (one Python int per
step), so even a 10,000-step chain analyses in milliseconds. Nodes keep their definition order, and
every result that has to choose (a cycle's starting point, critical path ties) uses that order, so
the same definition always gives the same answer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from workflows.definition import SwitchParameters

DEFAULT_BRANCH = "default"


@dataclass(frozen=True)
class Graph:
    """Steps in definition order and, for each, the steps it needs (known ids only, no duplicates)."""

    order: tuple[str, ...]
    needs: Mapping[str, tuple[str, ...]]
    position: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, nodes: Iterable[tuple[str, Iterable[str]]]) -> Graph:
        needs: dict[str, tuple[str, ...]] = {}
        raw = [(node, list(upstream)) for node, upstream in nodes]
        known = {node for node, _ in raw}
        for node, upstream in raw:
            needs[node] = tuple(dict.fromkeys(u for u in upstream if u in known))
        order = tuple(needs)
        return cls(order, needs, {node: index for index, node in enumerate(order)})

    def dependants(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {node: [] for node in self.order}
        for node in self.order:
            for upstream in self.needs[node]:
                found[upstream].append(node)
        return found


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components come out upstream first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    for root in graph.order:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(graph.needs[root]))]
        while work:
            node, upstream = work[-1]
            descended = False
            for candidate in upstream:
                if candidate not in index:
                    index[candidate] = low[candidate] = len(index)
                    stack.append(candidate)
                    on_stack.add(candidate)
                    work.append((candidate, iter(graph.needs[candidate])))
                    descended = True
                    break
                if candidate in on_stack:
                    low[node] = min(low[node], index[candidate])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component, key=graph.position.__getitem__))
    return components


def find_cycles(graph: Graph, components: list[list[str]] | None = None) -> list[list[str]]:
    """One cycle per strongly connected component, as a path in run order: [a, b, c, a]."""
    cycles: list[list[str]] = []
    for component in components if components is not None else strongly_connected(graph):
        start = component[0]
        if len(component) == 1 and start not in graph.needs[start]:
            continue
        cycles.append(_cycle_through(graph, start, set(component)))
    return sorted(cycles, key=lambda cycle: graph.position[cycle[0]])


def _cycle_through(graph: Graph, start: str, members: set[str]) -> list[str]:
    # Breadth-first along "is needed by" edges inside the component: the shortest way back to start.
    dependants: dict[str, list[str]] = {node: [] for node in members}
    for node in sorted(members, key=graph.position.__getitem__):
        for upstream in graph.needs[node]:
            if upstream in members:
                dependants[upstream].append(node)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for following in dependants[node]:
            if following == start:
                trail = [node]
                while trail[-1] != start:
                    trail.append(came_from[trail[-1]])
                return [*reversed(trail), start]
            if following not in came_from:
                came_from[following] = node
                queue.append(following)
    return [start, start]


@dataclass(frozen=True)
class Levels:
    levels: list[list[str]]  # level 1 first; each in definition order
    blocked: set[str]  # in a cycle or downstream of one: never placed


def topological_levels(graph: Graph) -> Levels:
    """A step's level is one more than the deepest step it needs; steps of one level can run together."""
    waiting = {node: len(graph.needs[node]) for node in graph.order}
    dependants = graph.dependants()
    level: dict[str, int] = {}
    current = [node for node in graph.order if waiting[node] == 0]
    levels: list[list[str]] = []
    while current:
        levels.append(current)
        following: list[str] = []
        for node in current:
            level[node] = len(levels)
            for dependant in dependants[node]:
                waiting[dependant] -= 1
                if waiting[dependant] == 0:
                    following.append(dependant)
        current = sorted(following, key=graph.position.__getitem__)
    return Levels(levels, {node for node in graph.order if node not in level})


class Upstream:
    """Every step each step transitively needs, as bitsets over the definition order."""

    def __init__(self, graph: Graph, components: list[list[str]] | None = None) -> None:
        self._graph = graph
        self._bits: dict[str, int] = {}
        bit = {node: 1 << index for index, node in enumerate(graph.order)}
        for component in components if components is not None else strongly_connected(graph):
            members = set(component)
            mask = 0
            for node in component:
                for upstream in graph.needs[node]:
                    if upstream not in members:
                        mask |= self._bits[upstream] | bit[upstream]
            if len(component) > 1 or component[0] in graph.needs[component[0]]:
                for node in component:
                    mask |= bit[node]  # in a cycle every member is upstream of every other
            for node in component:
                self._bits[node] = mask

    def contains(self, step: str, candidate: str) -> bool:
        """True when `candidate` finishes before `step` can start."""
        index = self._graph.position.get(candidate)
        return index is not None and bool(self._bits.get(step, 0) >> index & 1)

    def of(self, step: str) -> list[str]:
        bits = self._bits.get(step, 0)
        found: list[str] = []
        while bits:
            lowest = bits & -bits
            found.append(self._graph.order[lowest.bit_length() - 1])
            bits ^= lowest
        return found


def parallel_width(levels: Sequence[Sequence[str]]) -> int:
    return max((len(level) for level in levels), default=0)


def critical_path(graph: Graph, levels: Sequence[Sequence[str]], cost: Mapping[str, float]) -> list[str]:
    """The chain with the largest total cost (then the most steps, then the earliest steps)."""
    best: dict[str, tuple[float, int, str | None]] = {}

    def rank(node: str) -> tuple[float, int, int]:
        total, length, _ = best[node]
        return (total, length, -graph.position[node])

    for level in levels:
        for node in level:
            upstream = [u for u in graph.needs[node] if u in best]
            before = max(upstream, key=rank) if upstream else None
            total, length = (best[before][0], best[before][1]) if before else (0.0, 0)
            best[node] = (total + cost.get(node, 1.0), length + 1, before)
    if not best:
        return []
    node: str | None = max(best, key=rank)
    path: list[str] = []
    while node is not None:
        path.append(node)
        node = best[node][2]
    return path[::-1]


@dataclass(frozen=True)
class Gate:
    """A switch that decides whether a step runs: the step runs only if one of `branches` is chosen."""

    switch: str
    branches: tuple[str, ...]


def switch_gates(switches: Mapping[str, SwitchParameters]) -> dict[str, list[Gate]]:
    """For every step named in a switch's cases or default, the switches (and branches) that gate it."""
    gates: dict[str, dict[str, list[str]]] = {}
    for switch_id, parameters in switches.items():
        for case in parameters.cases:
            for step in case.then:
                gates.setdefault(step, {}).setdefault(switch_id, []).append(case.name)
        for step in parameters.default:
            gates.setdefault(step, {}).setdefault(switch_id, []).append(DEFAULT_BRANCH)
    return {
        step: [Gate(switch, tuple(dict.fromkeys(branches))) for switch, branches in by_switch.items()]
        for step, by_switch in gates.items()
    }


def possible_branches(
    parameters: SwitchParameters, constant: Callable[[str | bool], bool | None]
) -> set[str]:
    """Branches a switch can choose; `constant(when)` is True/False for constant conditions, else None.

    The first true case wins, so a constant-true case makes every later case (and default) impossible.
    """
    possible: set[str] = set()
    for case in parameters.cases:
        value = constant(case.when)
        if value is False:
            continue
        possible.add(case.name)
        if value is True:
            return possible
    possible.add(DEFAULT_BRANCH)
    return possible
