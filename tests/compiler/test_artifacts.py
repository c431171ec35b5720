"""Artifacts: the Python-shaped preview parses, the Mermaid graph shows kinds, loops and branches."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

from tests.compiler import compile_yaml
from workflows.compiler import compile_file

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def parse_python(source: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an invalid escape sequence is a warning, not a SyntaxError
        return ast.parse(source)


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_preview_of_every_example_is_valid_python(path: Path) -> None:
    preview = compile_file(path).artifacts.preview
    tree = parse_python(preview)
    function = tree.body[0]
    assert isinstance(function, ast.AsyncFunctionDef)
    assert [arg.arg for arg in function.args.args] == ["inputs"]


def test_preview_shows_levels_calls_and_step_settings() -> None:
    preview = compile_file(next(p for p in EXAMPLES if p.stem == "orders")).artifacts.preview
    assert preview.startswith("async def orders(inputs):\n")
    assert "    # level 4 — runs in parallel: notify, summary\n" in preview
    assert (
        "    fetch = await http(url=f\"customers/{inputs['customer']}/orders\", "
        'query={"limit": inputs[\'limit\'], "status": "new"})  # retry ×5, timeout 30s, local activity, connection shop\n'
    ) in preview
    assert "for index, item in enumerate(fetch['orders'])]  # for each item, 4 at a time" in preview
    assert "on error: continue" in preview
    assert '    if route["branch"] == "big":\n' in preview


def test_preview_shows_a_gated_steps_own_condition() -> None:
    compilation = compile_yaml(
        """
        id: gated
        steps:
          - id: route
            kind: switch
            with: {cases: [{name: big, when: "${ .inputs.n > 10 }", then: [notify]}]}
          - {id: notify, kind: set, if: "${ .inputs.n > 100 }", with: {v: 1}}
        outputs: "${ .steps.notify.output }"
        """
    )
    assert compilation.ok, compilation.diagnostics
    assert '    if route["branch"] == "big" and jq(".inputs.n > 100"):\n' in compilation.artifacts.preview


def test_preview_stays_valid_python_with_awkward_names_and_text() -> None:
    compilation = compile_yaml(
        r'''
        id: 9-lives
        name: 'Quotes """ and \ backslashes'
        steps:
          - id: class
            kind: set
            with:
              "weird key": 'say "hi" {braces} \n # not a comment ${ .inputs["a b"] } and ${ "x" + "}" }'
              tab: "a\tb"
              number: 1.5
              nothing: null
          - id: my-step
            kind: http
            needs: [class]
            on_error: pause
            with:
              url: "https://x/${ .steps.class.output | tostring | @uri }"
              headers: {X-Id: "${ .steps[\"class\"].output.number }", class: "${ 1 }"}
          - id: jq
            kind: delay
            needs: [my-step]
            with: {duration: 5m}
        outputs: "${ .steps[\"my-step\"].output }"
        '''
    )
    assert compilation.ok, compilation.diagnostics
    preview = compilation.artifacts.preview
    parse_python(preview)
    assert preview.startswith("async def workflow_9_lives(inputs):")
    assert "    class_ = {" in preview
    assert '    jq_ = await sleep("5m")' in preview
    assert "on error: pause" in preview


def test_mermaid_labels_kinds_loops_and_switch_branches() -> None:
    mermaid = compile_file(next(p for p in EXAMPLES if p.stem == "orders")).artifacts.mermaid
    lines = mermaid.splitlines()
    assert lines[0] == "flowchart TD"
    assert '    n0["fetch [http]"]' in lines
    assert '    n1[["score [python]<br/>for each .steps.fetch.output.orders ×4"]]' in lines
    assert '    n2{"route [switch]"}' in lines
    assert '    n2 -->|"big"| n3' in lines
    assert '    n2 -->|"default"| n4' in lines
    assert "    n0 --> n1" in lines


def test_mermaid_escapes_quotes_and_angle_brackets() -> None:
    compilation = compile_yaml(
        """
        id: esc
        steps:
          - id: route
            kind: switch
            with: {cases: [{name: 'say "<hi>"', when: "${ .inputs.x > 1 }", then: [a]}]}
          - {id: a, kind: set, for_each: {items: "${ [1, 2] | map(. > 1) }"}, with: {v: "${ .item }"}}
        outputs: "${ .steps.a.output }"
        """
    )
    mermaid = compilation.artifacts.mermaid
    assert '|"say #quot;#lt;hi#gt;#quot;"|' in mermaid
    assert "map(. #gt; 1)" in mermaid


def test_artifacts_carry_the_plan_hash_and_input_schema() -> None:
    compilation = compile_file(next(p for p in EXAMPLES if p.stem == "hello"))
    assert compilation.artifacts.plan_hash == compilation.plan.hash
    assert compilation.artifacts.input_schema["required"] == ["name"]
