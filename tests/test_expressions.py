"""jq expressions on their own: templates, the one checker, the run-time guard, bounded evaluation and
the steps an expression reads. No server needed."""

from __future__ import annotations

import time

import pytest

from rte.errors import ExpressionError
from workflows.expressions import (
    FORBIDDEN_BUILTINS,
    GUARDED_TIMEOUT_S,
    MAX_RESULT_BYTES,
    check_program,
    evaluate,
    evaluate_template,
    expression_problems,
    is_bounded,
    iter_programs,
    referenced_steps,
    split_template,
    strip_expression,
    truthy,
)

DATA = {"inputs": {"x": 2, "env": "prod", "now": "noon"}, "steps": {"a": {"output": {"n": 40}}}}

# One call of each forbidden builtin, as a program would write it.
FORBIDDEN_CALLS = {
    "now": "now",
    "localtime": "0 | localtime",
    "strflocaltime": '0 | strflocaltime("%H")',
    "env": "env.HOME",
    "$ENV": "$ENV.HOME",
    "input": "input",
    "inputs": "[inputs]",
    "input_filename": "input_filename",
    "input_line_number": "input_line_number",
    "debug": 'debug("x")',
    "stderr": "stderr",
    "halt": "halt",
    "halt_error": "halt_error(1)",
    "get_search_list": "get_search_list",
    "get_jq_origin": "get_jq_origin",
    "get_prog_origin": "get_prog_origin",
    "modulemeta": '"m" | modulemeta',
    "import": 'import "a" as a; .',
    "include": 'include "a"; .',
    "$__prog_args": "$__prog_args",
}


# Templates -----------------------------------------------------------------------------------------


def test_a_whole_expression_keeps_its_type_and_text_around_expressions_is_interpolated() -> None:
    assert evaluate_template("${ .inputs.x }", DATA) == 2
    assert evaluate_template("${ .steps.a.output }", DATA) == {"n": 40}
    assert evaluate_template("x=${ .inputs.x }, n=${ .steps.a.output.n }!", DATA) == "x=2, n=40!"
    assert evaluate_template("obj: ${ .steps.a.output }", DATA) == 'obj: {"n":40}'
    assert evaluate_template({"a": ["${ .inputs.x + 1 }", 3, None]}, DATA) == {"a": [3, 3, None]}
    assert evaluate_template("no template here", DATA) == "no template here"


def test_braces_inside_jq_strings_and_interpolations_do_not_end_the_expression() -> None:
    assert [part.text for part in split_template('${ {a: "}"} }') or []] == ['{a: "}"}']
    assert evaluate_template('${ {a: "}"} | .a }', DATA) == "}"
    assert evaluate_template('${ "\\("}")" }', DATA) == "}"  # a string inside an interpolation
    assert evaluate_template('${ "a\\({b: 1} | .b)c" }-${ 2 }', DATA) == "a1c-2"


def test_malformed_templates_are_reported() -> None:
    with pytest.raises(ExpressionError, match="closing '}' is missing"):
        split_template("hello ${ .inputs.name")
    with pytest.raises(ExpressionError, match="empty expression"):
        split_template("${ }")
    with pytest.raises(ExpressionError, match="found text around it"):
        strip_expression("yes ${ true }")
    assert strip_expression(".a") == ".a"
    assert list(iter_programs({"a": ["x ${ .b } ${ .c }"]})) == [(("a", 0), ".b"), (("a", 0), ".c")]


def test_variables_are_bound_by_name() -> None:
    assert evaluate("$input.a + $context.b", None, {"input": {"a": 1}, "context": {"b": 2}}) == 3
    assert evaluate_template("${ $input }-${ . }", 7, {"input": "x"}) == "x-7"
    assert check_program("$input + 1", ["input"]) == []
    assert [p.message for p in check_program("$nope", ["input"])] == [
        "invalid jq: $nope is not defined (at column 1)"
    ]


def test_truthiness_is_jqs() -> None:
    assert [truthy(value) for value in (None, False, 0, "", [], True)] == [
        False,
        False,
        True,
        True,
        True,
        True,
    ]


# Forbidden builtins ----------------------------------------------------------------------------------


def test_every_forbidden_builtin_has_a_case_here() -> None:
    assert set(FORBIDDEN_CALLS) == FORBIDDEN_BUILTINS


@pytest.mark.parametrize("name", sorted(FORBIDDEN_CALLS))
def test_forbidden_builtins_are_rejected_by_the_check_and_by_evaluate(name: str) -> None:
    program = FORBIDDEN_CALLS[name]
    assert [(p.code, p.message.split("'")[1]) for p in check_program(program)] == [("E202", name)]
    with pytest.raises(ExpressionError, match=f"'{_pattern(name)}' is not allowed in expressions"):
        evaluate(program, DATA)


@pytest.mark.parametrize("name", sorted(FORBIDDEN_CALLS))
def test_forbidden_builtins_hidden_in_an_interpolation_are_rejected(name: str) -> None:
    program = f'"value: \\({FORBIDDEN_CALLS[name]})"'
    assert [p.code for p in check_program(program)] == ["E202"]
    with pytest.raises(ExpressionError, match="is not allowed in expressions"):
        evaluate(program, DATA)
    with pytest.raises(ExpressionError, match="is not allowed in expressions"):
        evaluate_template("prefix ${ " + program + " } suffix", DATA)


@pytest.mark.parametrize(
    "program",
    [
        '"\\($ENV.HOME)"',
        '"a\\("b\\(now)")"',  # nested interpolation
        "{a: if true then 1, inputs, 2 else 3 end}",  # a comma inside if … end separates no keys
        ".a # a comment \\\\\n| now",  # an escaped backslash does not continue the comment
        '@base64 "\\(input)"',
        "{$ENV}",
        "def now: 1; now",  # shadowing is not trusted: the name is refused anyway
        "[.[] | env]",
    ],
)
def test_hidden_or_disguised_forbidden_builtins_are_found(program: str) -> None:
    assert [p.code for p in check_program(program)] == ["E202"]
    with pytest.raises(ExpressionError, match="is not allowed"):
        evaluate(program, DATA)


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        (".inputs.x", 2),
        (".inputs.env", "prod"),
        (".inputs.now", "noon"),
        ('."now"', None),
        ('.inputs | .["env"]', "prod"),
        ("{now: 1} | .now", 1),
        ("{input: 1, env: 2, inputs: 3} | .input + .env + .inputs", 6),
        ("{env: 5} | {env} | .env", 5),  # `{env}` is short for `{env: .env}`
        ('"now and $ENV and inputs"', "now and $ENV and inputs"),
        ("# now\n.inputs.x", 2),
        ("1 # a comment \\\n now", 1),  # a backslash continues the comment: `now` is not code
        ("$__loc__", {"file": "<top-level>", "line": 1}),
        (".inputs as $input | $input.x", 2),
    ],
)
def test_fields_keys_strings_and_comments_named_like_builtins_are_fine(
    program: str, expected: object
) -> None:
    assert check_program(program) == []
    assert evaluate(program, DATA) == expected


def test_the_run_time_verdict_is_cached_per_program(monkeypatch: pytest.MonkeyPatch) -> None:
    from workflows import expressions

    program = '"\\(now) once"'
    with pytest.raises(ExpressionError):
        evaluate(program, DATA)
    monkeypatch.setattr(expressions, "forbidden_names", lambda _: pytest.fail("scanned again"))
    with pytest.raises(ExpressionError, match="'now' is not allowed"):
        evaluate(program, DATA)


def test_the_prelude_stops_a_forbidden_builtin_the_scanner_would_miss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workflows import expressions

    monkeypatch.setattr(expressions, "_refusal", lambda _: None)  # as if the scanner were fooled
    with pytest.raises(ExpressionError, match="now is not allowed"):
        evaluate("now + 0", None)
    assert evaluate("$ENV", None) is None


# Syntax -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "message"),
    [
        (".a | add(", "invalid jq: syntax error, unexpected end of file (at column 9)"),
        ("nosuchfunction(1)", "invalid jq: nosuchfunction/1 is not defined (at column 1)"),
        (".a\n| foo", "invalid jq: foo/0 is not defined (at line 2, column 3)"),
        ("def f: 1;", "invalid jq: syntax error, unexpected end of file (at column 9)"),
        ("module {a: 1}; .", "invalid jq: syntax error, unexpected module (at column 1)"),
    ],
)
def test_syntax_errors_point_into_the_program_as_written(program: str, message: str) -> None:
    assert [(p.code, p.message) for p in check_program(program)] == [("E201", message)]
    with pytest.raises(ExpressionError, match="not defined|syntax error"):
        evaluate(program, DATA)


def test_batched_checks_give_the_same_answers_as_single_checks() -> None:
    programs = [f".steps.s{i}.output" for i in range(250)]
    programs[7] = ".a | ("
    programs[99] = '"\\(inputs)"'
    programs[120] = "1) | (2"  # cannot escape the function it is checked in
    programs[180] = "now"
    programs[200] = "# a comment\n.x"
    programs[201] = "$v + 1"
    found = expression_problems(programs, ["v"])
    assert [index for index, problems in enumerate(found) if problems] == [7, 99, 120, 180]
    assert all(found[i] == check_program(programs[i], ["v"]) for i in (7, 99, 120, 180, 201))


# Bounded evaluation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("program", ["def f: f; f", "[range(1e12)]", "repeat(1)", "[limit(1e12; repeat(1))]"])
def test_an_endless_program_fails_clearly_and_the_next_evaluation_works(program: str) -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError, match=f"longer than its {GUARDED_TIMEOUT_S:g} s limit"):
        evaluate(program, None)
    assert time.monotonic() - started < GUARDED_TIMEOUT_S + 1.5
    assert evaluate("[range(3)]", None) == [0, 1, 2]  # guarded, in a fresh child
    assert evaluate(".inputs.x + 1", DATA) == 3  # in-process


def test_a_huge_result_is_refused_with_the_size_limit() -> None:
    with pytest.raises(ExpressionError, match=f"over the {MAX_RESULT_BYTES:,}-byte limit"):
        evaluate("[.[] | ascii_downcase]", ["X" * 1000] * 1200)  # in-process
    with pytest.raises(ExpressionError, match=f"over the {MAX_RESULT_BYTES:,}-byte limit"):
        evaluate('"x" * 2e6', None)
    started = time.monotonic()
    with pytest.raises(ExpressionError, match="limit"):  # jq needs seconds to build it: time runs out first
        evaluate("[range(1e7)]", None)
    assert time.monotonic() - started < GUARDED_TIMEOUT_S + 1.5


def test_a_program_that_copies_its_input_through_pipes_runs_guarded() -> None:
    # Built in-process, it would double 40 times: it is not "bounded", so it runs guarded.
    program = " | ".join(["[., .]"] * 40)
    assert not is_bounded(program)
    with pytest.raises(ExpressionError, match="limit"):
        evaluate(program, "x" * 100)


def test_catastrophic_regex_backtracking_is_bounded() -> None:
    started = time.monotonic()
    with pytest.raises(ExpressionError, match="limit"):
        evaluate('test("^(a+)+$")', "a" * 40 + "!")
    assert time.monotonic() - started < GUARDED_TIMEOUT_S + 1.5
    assert evaluate('test("^a+$")', "aaa") is True


@pytest.mark.parametrize(
    ("program", "bounded"),
    [
        (".steps.a.output.n + 1", True),
        ("[.steps.a.output.items[] | select(.ok)]", True),
        ("{id: .inputs.id, name: .inputs.name, n: (.steps.x.output | length)}", True),
        (".range", True),  # a field, not the builtin
        ("[range(3)]", False),
        ('"\\([range(3)])"', False),  # names inside interpolations count
        ("def f: 1; f", False),
        ('test("a")', False),
        ('"x" * 3', False),
        (".[10] = 1", False),  # assignment pads arrays to any index
        ("[..]", False),
        ("{a: .[], b: .[]}", False),  # a cartesian product
        ("[., ., ., ., ., ., ., .]", False),
        ("tojson | tojson | tojson", False),
    ],
)
def test_bounded_programs_are_those_that_cannot_loop_or_grow(program: str, bounded: bool) -> None:
    assert is_bounded(program) is bounded


# What an expression reads ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "steps"),
    [
        (".steps.a.output", {"a"}),
        (".steps.a.output + .steps.b.output", {"a", "b"}),
        (".steps.a-b", {"a"}),  # jq reads `.steps.a - b`
        ('.steps["a-b"].output', {"a-b"}),
        ('.steps."a-b".output', {"a-b"}),
        ('.steps.["a-b"]', {"a-b"}),
        ('."steps".a', {"a"}),
        ('.["steps"]["a"]', {"a"}),
        (".steps?.a", {"a"}),
        ('"see .steps.x" + "\\(.steps.y.output)"', {"y"}),  # text is not code; interpolations are
        ("# .steps.c\n.steps.d", {"d"}),
        (".inputs.steps.x", set()),  # another path's field called `steps`
        (". as $s | $s.steps.x", set()),
        (".inputs", set()),
        (".steps", None),
        (".steps | keys", None),
        (".steps[]", None),
        ('.steps["a" + "b"]', None),
        ("{steps}", None),
        ('{"steps"}', None),
    ],
)
def test_referenced_steps_reads_programs_as_jq_does(program: str, steps: set[str] | None) -> None:
    assert referenced_steps(program) == steps


def _pattern(name: str) -> str:
    return name.replace("$", r"\$")
