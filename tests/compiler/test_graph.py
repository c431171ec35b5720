"""Graph analysis: cycles, levels, critical path, reachability — and it stays fast at 1,000 steps."""

from __future__ import annotations

import json

from tests.compiler import compile_yaml, the
from workflows.compiler import compile_source
from workflows.graph import Graph, Upstream, critical_path, find_cycles, parallel_width, topological_levels


def test_each_cycle_is_reported_once_as_a_path() -> None:
    graph = Graph.build([("a", ["c"]), ("b", ["a"]), ("c", ["b"]), ("d", ["d"]), ("e", ["c"])])
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["d", "d"]]
    levels = topological_levels(graph)
    assert levels.levels == [] and levels.blocked == {"a", "b", "c", "d", "e"}


def test_cycle_diagnostic_prints_the_cycle_and_points_at_the_need_that_closes_it() -> None:
    compilation = compile_yaml(
        """
        id: loop
        steps:
          - {id: a, kind: set, needs: [b], with: {v: 1}}
          - {id: b, kind: set, needs: [a], with: {v: 2}}
        outputs: "${ [.steps.a.output, .steps.b.output] }"
        """
    )
    error = the(compilation, "E301")
    assert error.message == "steps form a cycle: a → b → a"
    assert (error.line, error.path) == (3, "/steps/0/needs/0")
    assert [stage.status for stage in compilation.stages][4:] == ["failed", "skipped", "skipped"]


def test_a_switch_naming_its_own_upstream_is_a_cycle() -> None:
    compilation = compile_yaml(
        """
        id: gate-loop
        steps:
          - {id: a, kind: set, with: {v: 1}}
          - id: s
            kind: switch
            needs: [a]
            with: {cases: [{name: again, when: "${ .steps.a.output.v > 0 }", then: [a]}]}
        outputs: "${ .steps.a.output }"
        """
    )
    assert the(compilation, "E301").message == "steps form a cycle: a → s → a"


def test_levels_width_and_critical_path() -> None:
    graph = Graph.build([("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]), ("w", [])])
    levels = topological_levels(graph).levels
    assert levels == [["a", "w"], ["b", "c"], ["d"]]
    assert parallel_width(levels) == 2
    assert critical_path(graph, levels, {"a": 1, "b": 1, "c": 5, "d": 1, "w": 1}) == ["a", "c", "d"]
    # Ties go to the longer chain, then to the step defined first.
    assert critical_path(graph, levels, dict.fromkeys("abcdw", 0.0)) == ["a", "b", "d"]


def test_upstream_is_transitive() -> None:
    graph = Graph.build([("a", []), ("b", ["a"]), ("c", ["b"]), ("x", [])])
    upstream = Upstream(graph)
    assert upstream.of("c") == ["a", "b"]
    assert upstream.contains("c", "a") and not upstream.contains("a", "c") and not upstream.contains("c", "x")


def test_critical_path_counts_delays_by_their_duration() -> None:
    compilation = compile_yaml(
        """
        id: waits
        steps:
          - {id: start, kind: set, with: {v: 1}}
          - {id: short, kind: http, needs: [start], with: {url: "https://example.com"}}
          - {id: long, kind: delay, needs: [start], with: {duration: 1h}}
          - {id: end, kind: set, needs: [short, long], with: {v: "${ .steps.start.output }"}}
        outputs: "${ .steps.end.output }"
        """
    )
    stats = compilation.artifacts.stats
    assert stats.critical_path == ["start", "long", "end"]
    assert (stats.steps, stats.levels, stats.parallel_width) == (4, 3, 2)


def test_always_true_case_makes_later_branches_unreachable() -> None:
    compilation = compile_yaml(
        """
        id: shadowed
        steps:
          - id: route
            kind: switch
            with:
              cases: [{name: always, when: true, then: [a]}, {name: later, when: "${ .inputs.x }", then: [b]}]
              default: [c]
          - {id: a, kind: set, with: {v: 1}}
          - {id: b, kind: set, with: {v: 2}}
          - {id: c, kind: set, with: {v: 3}}
        outputs: "${ [.steps.a.output, .steps.b.output, .steps.c.output] }"
        """
    )
    unreachable = [d.message for d in compilation.diagnostics if d.code == "E302"]
    assert unreachable == [
        "step 'b' can never run: switch 'route' can never choose 'later'",
        "step 'c' can never run: switch 'route' can never choose 'default'",
    ]


def test_a_join_of_both_branches_is_reachable() -> None:
    compilation = compile_yaml(
        """
        id: join
        steps:
          - id: route
            kind: switch
            with: {cases: [{name: yes, when: "${ .inputs.ok }", then: [a]}], default: [b]}
          - {id: a, kind: set, with: {v: 1}}
          - {id: b, kind: set, with: {v: 2}}
          - {id: join, kind: set, needs: [a, b], with: {v: "${ .steps.a.output // .steps.b.output }"}}
        outputs: "${ .steps.join.output }"
        """
    )
    assert compilation.ok, compilation.diagnostics


def _chain(size: int) -> dict:
    steps = [{"id": "s0", "kind": "set", "with": {"value": "${ .inputs.start }"}}]
    steps += [
        {
            "id": f"s{i}",
            "kind": "set",
            "needs": [f"s{i - 1}"],
            "with": {"value": f"${{ .steps.s{i - 1}.output.value + 1 }}"},
        }
        for i in range(1, size)
    ]
    return {"id": "chain", "steps": steps, "outputs": f"${{ .steps.s{size - 1}.output }}"}


def _fan_out(size: int) -> dict:
    steps = [{"id": "root", "kind": "set", "with": {"n": 1}}]
    steps += [
        {
            "id": f"leaf{i}",
            "kind": "http",
            "needs": ["root"],
            "with": {"url": f"https://example.com/{i}?n=${{ .steps.root.output.n }}"},
        }
        for i in range(size - 1)
    ]
    return {"id": "fan-out", "steps": steps}


def test_a_thousand_step_chain_compiles_without_errors() -> None:
    compilation = compile_source(json.dumps(_chain(1000), indent=2), "chain.json")
    assert compilation.ok, compilation.diagnostics[:3]
    stats = compilation.artifacts.stats
    assert (stats.steps, stats.levels, stats.parallel_width) == (1000, 1000, 1)
    assert len(stats.critical_path) == 1000
    assert compilation.plan.root.step("s999").reads == ("s998",)


def test_a_thousand_step_fan_out_compiles_without_errors() -> None:
    compilation = compile_source(json.dumps(_fan_out(1000)), "fan-out.json")
    assert compilation.ok, compilation.diagnostics[:3]
    stats = compilation.artifacts.stats
    assert (stats.levels, stats.parallel_width) == (2, 999)


def test_a_long_cycle_is_found_without_recursion_limits() -> None:
    data = _chain(3000)
    data["steps"][0]["needs"] = ["s2999"]
    compilation = compile_source(json.dumps(data), "loop.json")
    error = the(compilation, "E301")
    assert error.message.startswith("steps form a cycle: s0 → s1 → s2 → ")
    assert error.message.endswith("s2999 → s0")
