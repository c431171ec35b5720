"""How long the compiler takes on large definitions: a 1,000-step chain and a 1,000-step fan-out,
each as YAML and as JSON, median of several runs, with the time per stage.

A second table puts the YAML reader side by side with ruamel.yaml's round-trip loader (what the
compiler used before), and shows what positions cost when a diagnostic needs them.

    python bench/bench_compile.py [--steps 1000] [--runs 7]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from ruamel.yaml import YAML

from workflows.compiler import STAGES, Compilation, compile_source
from workflows.source import parse_source


def chain(size: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"id": "s0", "kind": "set", "with": {"value": "${ .inputs.start }"}}]
    for i in range(1, size):
        previous = f"s{i - 1}"
        steps.append(
            {
                "id": f"s{i}",
                "kind": "set",
                "needs": [previous],
                "with": {"value": f"${{ .steps.{previous}.output.value + 1 }}"},
            }
        )
    return {
        "id": "chain",
        "inputs": {"type": "object", "properties": {"start": {"type": "integer", "default": 0}}},
        "steps": steps,
        "outputs": f"${{ .steps.s{size - 1}.output }}",
    }


def fan_out(size: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"id": "root", "kind": "set", "with": {"n": 1}}]
    for i in range(size - 1):
        steps.append(
            {
                "id": f"call{i}",
                "kind": "http",
                "needs": ["root"],
                "retry": {"max_attempts": 5, "initial_interval": "1s"},
                "with": {
                    "method": "POST",
                    "url": f"https://example.com/{i}",
                    "body": {"n": "${ .steps.root.output.n }"},
                },
            }
        )
    return {"id": "fan-out", "steps": steps}


def as_yaml(data: dict[str, Any]) -> str:
    buffer = io.StringIO()
    YAML().dump(data, buffer)
    return buffer.getvalue()


def measure(text: str, filename: str, runs: int) -> tuple[float, dict[str, float]]:
    totals: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    for _ in range(runs):
        started = time.perf_counter()
        compilation: Compilation = compile_source(text, filename)
        totals.append((time.perf_counter() - started) * 1000)
        assert compilation.ok, compilation.diagnostics[:3]
        for stage in compilation.stages:
            stages[stage.name].append(stage.duration_ms)
    return statistics.median(totals), {name: statistics.median(values) for name, values in stages.items()}


def median_ms(action: Callable[[], object], runs: int) -> float:
    times: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def parse_with_positions(text: str) -> None:
    source, problems = parse_source(text)
    assert source is not None, problems
    assert source.positions.value(("steps", 0)) is not None  # forces the positions


def yaml_readers(shapes: dict[str, Callable[[int], dict[str, Any]]], steps: int, runs: int) -> None:
    print(f"\nreading {steps:,}-step YAML, median of {runs} runs (ms)")
    print(f"{'definition':<16}{'ruamel rt':>11}{'this':>9}{'speed-up':>10}{'+ positions':>13}")
    for shape, build in shapes.items():
        text = as_yaml(build(steps))
        ruamel = median_ms(lambda text=text: YAML(typ="rt").load(text), runs)
        ours = median_ms(lambda text=text: parse_source(text), runs)
        positioned = median_ms(lambda text=text: parse_with_positions(text), runs)
        print(f"{shape:<16}{ruamel:>11.1f}{ours:>9.1f}{ruamel / ours:>9.1f}x{positioned:>13.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    shapes: dict[str, Callable[[int], dict[str, Any]]] = {"chain": chain, "fan-out": fan_out}
    print(f"compile time of {args.steps:,}-step definitions, median of {args.runs} runs (ms)")
    print(f"{'definition':<16}{'total':>9}{'vs json':>9}  " + "".join(f"{name:>12}" for name in STAGES))
    for shape, build in shapes.items():
        data = build(args.steps)
        results = {
            "json": measure(json.dumps(data, indent=2), f"{shape}.json", args.runs),
            "yaml": measure(as_yaml(data), f"{shape}.yaml", args.runs),
        }
        for syntax, (total, stages) in results.items():
            ratio = total / results["json"][0]
            row = f"{shape + ' ' + syntax:<16}{total:>9.1f}{ratio:>9.2f}  "
            print(row + "".join(f"{stages[name]:>12.1f}" for name in STAGES))
    yaml_readers(shapes, args.steps, args.runs)


if __name__ == "__main__":
    main()
