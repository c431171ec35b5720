"""jq expressions on their own: templates, the one checker, the run-time refusal of forbidden
builtins, which programs are cheap enough for the workflow thread, the guarded evaluator for the
rest, and the steps an expression reads. No server needed."""

from __future__ import annotations

import asyncio
import time

import pytest

from activities.expression import TIME_LIMIT_S, evaluate_guarded
from rte.errors import ExpressionError
from workflows.expressions import (
    FORBIDDEN_BUILTINS,
    IN_THREAD_MAX_INPUT_BYTES,
    MAX_RESULT_BYTES,
    ExpressionOutcome,
    ExpressionRequest,
    check_program,
    evaluate,
    evaluate_template,
    expression_problems,
    is_cheap,
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
        expressions.evaluate_program("now + 0", expressions.Document(None))
    assert expressions.evaluate_program("$ENV", expressions.Document(None)) is None


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


# Where programs run: cheap ones in-process, the rest in the guarded evaluator ------------------------


def _guarded(program: str, data: object = None) -> ExpressionOutcome:
    return asyncio.run(evaluate_guarded(ExpressionRequest(program=program, data=data)))


@pytest.mark.parametrize("program", ["def f: f; f", "[range(1e12)]", "repeat(1)", "[limit(1e12; repeat(1))]"])
def test_an_endless_program_fails_clearly_in_the_guarded_evaluator_and_the_next_one_works(program: str) -> None:
    started = time.monotonic()
    outcome = _guarded(program)
    assert not outcome.ok and f"longer than its {TIME_LIMIT_S:g} s limit" in (outcome.error or "")
    assert program in (outcome.error or "")  # the message names the expression
    assert time.monotonic() - started < TIME_LIMIT_S + 3
    assert _guarded("[range(3)]").value == [0, 1, 2]  # a fresh child took the killed one's place


def test_a_program_that_is_not_provably_cheap_is_refused_in_process() -> None:
    for program in ("[range(3)]", ". - .", "def f: 1; f"):
        with pytest.raises(ExpressionError, match="not provably cheap"):
            evaluate(program, [1, 2])
    with pytest.raises(ExpressionError, match="not provably cheap"):  # cheap, but on a large document
        evaluate("length", list(range(IN_THREAD_MAX_INPUT_BYTES)))
    with pytest.raises(ExpressionError, match="not provably cheap"):  # a claim-check reference inside
        evaluate(".a", {"a": {"$rte_ref": "0" * 64, "bytes": 10, "kind": "string"}})


def test_a_huge_result_is_refused_with_the_size_limit() -> None:
    outcome = _guarded('"x" * 2e6')
    assert not outcome.ok and f"over the {MAX_RESULT_BYTES:,}-byte limit" in (outcome.error or "")
    started = time.monotonic()
    outcome = _guarded("[range(1e8)]")  # time or memory runs out first: either way a clear failure
    assert not outcome.ok and "limit" in (outcome.error or "")
    assert time.monotonic() - started < TIME_LIMIT_S + 3


def test_array_subtraction_on_a_large_array_fails_within_the_limit() -> None:
    # Quadratic in jq: 73 KB of input held a worker's GIL for seconds when it ran in-process.
    assert not is_cheap(". - .")
    outcome = _guarded(". - . | length", list(range(60_000)))
    assert not outcome.ok and "limit" in (outcome.error or "")


def test_a_program_that_copies_its_input_through_pipes_is_not_cheap() -> None:
    program = " | ".join(["[., .]"] * 40)
    assert not is_cheap(program)
    outcome = _guarded(program, "x" * 100)
    assert not outcome.ok and "limit" in (outcome.error or "")


def test_catastrophic_regex_backtracking_is_bounded() -> None:
    started = time.monotonic()
    outcome = _guarded('test("^(a+)+$")', "a" * 40 + "!")
    assert not outcome.ok and "limit" in (outcome.error or "")
    assert time.monotonic() - started < TIME_LIMIT_S + 3
    assert _guarded('test("^a+$")', "aaa").value is True


def test_deep_recursion_and_memory_bombs_fail_clearly() -> None:
    for program in ("def f: [f]; f", "[range(1e9)] | length", "reduce range(1e9) as $i ([]; . + [$i])"):
        outcome = _guarded(program)
        assert not outcome.ok and "limit" in (outcome.error or ""), (program, outcome)


@pytest.mark.parametrize(
    ("program", "cheap"),
    [
        (".steps.a.output.n + 1", True),
        ("[.steps.a.output.items[] | select(.ok)]", True),
        ("{id: .inputs.id, name: .inputs.name, n: (.steps.x.output | length)}", True),
        ('"Hello \\(.inputs.name)"', True),
        (".items | map(.id)", True),
        (".total - 1", True),  # subtraction with a number cannot be array subtraction
        (".range", True),  # a field, not the builtin
        (". - .", False),  # array subtraction is quadratic
        (".a - .b", False),
        (".price * .qty", False),  # `*` repeats strings
        (".inputs.n * 2", True),  # at most twice the input
        (".n * 1000", False),
        ("[range(3)]", False),
        ('"\\([range(3)])"', False),  # names inside interpolations count
        ("def f: 1; f", False),
        ('test("a")', False),
        ('"x" * 1e6', False),
        (".[10] = 1", False),  # assignment pads arrays to any index
        ("[..]", False),
        ("{a: .[], b: .[]}", False),  # a cartesian product
        ("[., ., ., ., ., ., ., .]", False),
        ("tojson | tojson | tojson", False),
        ("map(.a) | map(.b)", False),  # two iterations: conservative
        ("implode", False),
    ],
)
def test_cheap_programs_are_a_linear_time_subset(program: str, cheap: bool) -> None:
    assert is_cheap(program) is cheap


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


def test_plain_paths_are_read_in_place_with_jqs_meaning() -> None:
    from workflows.expressions import NOT_WALKED, plain_path, walk_template

    data = {"inputs": {"a": {"b": 1}, "none": None, "list": [1, 2]}, "item": {"id": 7}}
    assert plain_path(".inputs.a.b") == ("inputs", "a", "b") and plain_path(".") == ()
    assert plain_path(".a | length") is None and plain_path(".a[0]") is None
    assert walk_template("${ .inputs.a.b }", data) == 1
    assert walk_template({"x": "${ .item }", "y": "id-${ .item.id }"}, data) == {"x": {"id": 7}, "y": "id-7"}
    assert walk_template("${ .inputs.none.z }", data) is None  # null.z is null in jq
    assert walk_template("${ .inputs.missing }", data) is None
    assert walk_template("${ .inputs.list.z }", data) is NOT_WALKED  # jq's error, left to jq
    reference = {"$rte_ref": "0" * 64, "bytes": 10, "kind": "object"}
    assert walk_template("${ .doc.rows }", {"doc": reference}) is NOT_WALKED  # inside a reference
    assert walk_template("${ .doc }", {"doc": reference}) == reference  # forwarding one is fine
    big = {"rows": ["x" * 100] * 1000}
    assert walk_template("${ .big }", {"big": big}) is NOT_WALKED  # large: the boundary stores it
    copied = walk_template("${ .item }", data)
    copied["id"] = 8
    assert data["item"]["id"] == 7  # a copy, as jq's answer is
    for template in ("${ .inputs.a }", "${ .item.id }", "n=${ .inputs.a.b }", {"k": ["${ .inputs.list }"]}):
        assert walk_template(template, data) == evaluate_template(template, data)
