"""Expression checks: jq syntax, forbidden builtins, what each step reads."""

from __future__ import annotations

import pytest

from tests.compiler import codes, compile_yaml, the
from workflows.compiler import expression_problems as problems_from_the_compiler
from workflows.expressions import expression_problems


def test_reads_are_the_upstream_steps_an_expression_names() -> None:
    compilation = compile_yaml(
        """
        id: reads
        steps:
          - {id: a, kind: set, with: {n: 1}}
          - {id: b, kind: set, with: {n: 2}}
          - id: c
            kind: set
            needs: [a, b]
            with: {n: "${ .steps.b.output.n }"}
          - id: d
            kind: set
            needs: [c]
            if: "${ .steps[\\"a\\"].output.n > 0 }"
            with: {everything: "${ .steps }"}
        outputs: "${ .steps.d.output }"
        """
    )
    assert compilation.ok, compilation.diagnostics
    steps = {step.id: step for step in compilation.plan.root.steps}
    assert steps["c"].reads == ("b",)
    assert steps["d"].reads == ("a", "b", "c")  # `.steps` whole: every upstream step


def test_reading_a_step_that_is_only_reachable_through_others_is_fine() -> None:
    compilation = compile_yaml(
        """
        id: transitive
        steps:
          - {id: a, kind: set, with: {n: 1}}
          - {id: b, kind: set, needs: [a], with: {n: 2}}
          - {id: c, kind: set, needs: [b], with: {sum: "${ .steps.a.output.n + .steps.b.output.n }"}}
        outputs: "${ .steps.c.output }"
        """
    )
    assert compilation.ok, compilation.diagnostics
    assert compilation.plan.root.step("c").reads == ("a", "b")


def test_a_step_reading_itself_is_an_error() -> None:
    compilation = compile_yaml(
        """
        id: itself
        steps:
          - {id: a, kind: set, with: {n: "${ .steps.a.output }"}}
        outputs: "${ .steps.a.output }"
        """
    )
    assert the(compilation, "E204").message == "step 'a' reads its own output"


def test_fields_named_like_forbidden_builtins_are_allowed() -> None:
    compilation = compile_yaml(
        """
        id: fields
        inputs: {type: object, properties: {env: {type: string}, now: {type: string}}}
        steps:
          - {id: a, kind: set, with: {e: "${ .inputs.env }", n: "${ .inputs.now }", i: "${ .inputs | keys }"}}
        outputs: "${ .steps.a.output }"
        """
    )
    assert compilation.ok, compilation.diagnostics


@pytest.mark.parametrize(
    ("program", "code"),
    [
        ("now", "E202"),
        ("env.HOME", "E202"),
        ("$ENV.HOME", "E202"),
        ("[input]", "E202"),
        ("[inputs]", "E202"),
        ('"\\($ENV.SECRET)"', "E202"),  # hidden in string interpolation
        ('"a\\("b\\(now)")"', "E202"),  # nested interpolation
        ("debug", "E202"),
        (".a | .[0", "E201"),
        ("nosuchfunction(1)", "E201"),
        ("$undefined", "E201"),
        ("1) | (2", "E201"),  # cannot escape the batch it is checked in
        ('"open', "E201"),
    ],
)
def test_bad_programs_are_rejected(program: str, code: str) -> None:
    assert [problem.code for problem in expression_problems([program])[0]] == [code]


@pytest.mark.parametrize(
    "program",
    [
        ".inputs.x",
        '."now"',
        '.a."env"',
        "{input: 1} | .input",
        "# comment\n.a",
        '"now"',
        "$__loc__",
        ".a as $x | $x",
    ],
)
def test_good_programs_pass(program: str) -> None:
    assert expression_problems([program]) == [[]]


def test_many_programs_are_checked_together_and_each_error_is_found() -> None:
    programs = [f".steps.s{i}.output" for i in range(250)]
    programs[7] = ".a | ("
    programs[180] = "now"
    problems = expression_problems(programs)
    assert [index for index, found in enumerate(problems) if found] == [7, 180]


def test_unterminated_template_is_reported_at_its_value() -> None:
    compilation = compile_yaml(
        """
        id: open
        steps:
          - id: a
            kind: set
            with:
              text: "hello ${ .inputs.name"
        outputs: "${ .steps.a.output }"
        """
    )
    error = the(compilation, "E201")
    assert "closing '}' is missing" in error.message
    assert (error.line, error.column) == (6, 13)


def test_if_must_be_one_expression() -> None:
    compilation = compile_yaml(
        """
        id: cond
        steps:
          - {id: a, kind: set, with: {n: 1}, if: "yes ${ true }"}
        outputs: "${ .steps.a.output }"
        """
    )
    error = the(compilation, "E201")
    assert error.path == "/steps/0/if"
    assert error.hint == "write the whole value as one ${ … } expression"


def test_switch_conditions_and_transform_programs_are_checked() -> None:
    compilation = compile_yaml(
        """
        id: checked
        steps:
          - id: route
            kind: switch
            with:
              cases: [{name: a, when: "${ .x == }", then: [t]}]
          - id: t
            kind: transform
            with: {input: 1, jq: "now"}
        outputs: "${ .steps.t.output }"
        """
    )
    assert codes(compilation) == ["E201", "E202"]
    assert [d.path for d in compilation.diagnostics] == ["/steps/0/with/cases/0/when", "/steps/1/with/jq"]


def test_transform_program_reads_its_input_not_the_steps() -> None:
    compilation = compile_yaml(
        """
        id: transform
        steps:
          - {id: a, kind: set, with: {steps: {x: 1}}}
          - {id: t, kind: transform, needs: [a], with: {input: "${ .steps.a.output }", jq: ".steps.x"}}
        outputs: "${ .steps.t.output }"
        """
    )
    assert compilation.ok, compilation.diagnostics
    assert compilation.plan.root.step("t").reads == ("a",)
    assert compilation.plan.root.step("t").with_["jq"] == ".steps.x"


def test_literal_items_cannot_hold_expressions() -> None:
    compilation = compile_yaml(
        """
        id: items
        steps:
          - {id: a, kind: set, for_each: {items: [1, "${ .inputs.x }"]}, with: {v: "${ .item }"}}
        outputs: "${ .steps.a.output }"
        """
    )
    assert the(compilation, "E201").path == "/steps/0/for_each/items"


def test_the_compiler_still_exports_the_expression_checker() -> None:
    assert problems_from_the_compiler is expression_problems


def test_a_step_id_with_a_dash_read_as_a_field_gets_a_hint() -> None:
    compilation = compile_yaml(
        """
        id: dashed
        steps:
          - {id: fetch-orders, kind: set, with: {n: 1}}
          - {id: b, kind: set, needs: [fetch-orders], with: {n: "${ .steps.fetch-orders.output.n }"}}
        outputs: "${ .steps.b.output }"
        """
    )
    error = the(compilation, "E201")  # jq reads `.steps.fetch - orders`; no "unused output" warning
    assert (
        error.message
        == "invalid jq: orders/0 is not defined (at column 14) in ${ .steps.fetch-orders.output.n }"
    )
    assert error.hint == 'step ids with "-" are read as .steps["fetch-orders"]'


def test_reads_through_brackets_and_interpolations_are_found_and_text_is_not_a_read() -> None:
    compilation = compile_yaml(
        """
        id: reads
        steps:
          - {id: fetch-orders, kind: set, with: {n: 1}}
          - {id: b, kind: set, with: {n: 2}}
          - id: c
            kind: set
            needs: [fetch-orders, b]
            with:
              n: '${ .steps["fetch-orders"].output.n }'
              text: '${ "see .steps.ghost or \\(.steps.b.output.n)" }'
              other: "${ .inputs.steps.x }"
        outputs: "${ .steps.c.output }"
        """
    )
    assert compilation.ok, compilation.diagnostics
    assert compilation.plan.root.step("c").reads == ("fetch-orders", "b")


@pytest.mark.parametrize(
    ("program", "hint"),
    [
        (".a && .b", "jq writes `and`, `or` and `not`"),
        ("'done'", "jq strings use double quotes"),
        ("[.a, .b", "the program ends too early"),
        (".a as x | 1", "jq variables start with $"),
        (".a | map(. + )", "a bracket closes here that was never opened, or a value is missing"),
        (".a | nosuchfunction", "'nosuchfunction' is not a jq builtin"),
        ("$nope", "no variables are defined here"),
        (".x.my-field", 'write .x["my-field"]'),
        (".a; .b", "only function arguments with ;"),
        ('"\\(.a"', "a string is not closed"),
    ],
)
def test_invalid_jq_comes_with_a_hint(program: str, hint: str) -> None:
    (problem,) = expression_problems([program])[0]
    assert problem.code == "E201" and problem.hint and hint in problem.hint, problem


def test_the_compiler_reports_a_jq_syntax_error_with_its_hint() -> None:
    error = the(
        compile_yaml(
            """
            id: hints
            steps:
              - {id: a, kind: set, with: {ok: "${ .inputs.x && .inputs.y }"}}
            outputs: "${ .steps.a.output }"
            """
        ),
        "E201",
    )
    assert error.path == "/steps/0/with/ok"
    assert error.hint == "jq writes `and`, `or` and `not` (e.g. `.a and (.b | not)`), not &&, || and !"


def test_a_dashed_step_id_keeps_its_own_hint() -> None:
    error = the(
        compile_yaml(
            """
            id: dashed
            steps:
              - {id: fetch-orders, kind: set, with: {n: 1}}
              - {id: b, kind: set, needs: [fetch-orders], with: {n: "${ .steps.fetch-orders.output.n }"}}
            outputs: "${ .steps.b.output }"
            """
        ),
        "E201",
    )
    assert error.hint == 'step ids with "-" are read as .steps["fetch-orders"]'


def test_an_unterminated_template_gets_a_hint() -> None:
    error = the(compile_yaml('id: t\nsteps:\n  - {id: a, kind: set, with: {x: "${ .inputs.x"}}\n'), "E201")
    assert error.message.startswith("unterminated ${ … }") and "ending at the }" in (error.hint or "")
