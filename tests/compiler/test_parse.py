"""Parsing: YAML and JSON syntax errors at the parser's line:column, duplicate keys, odd documents."""

from __future__ import annotations

import json

import pytest

from tests.compiler import compile_yaml, the
from workflows.compiler import compile_source
from workflows.source import MAX_SOURCE_CHARS, parse_source


def test_bad_yaml_indentation_points_at_the_offending_line() -> None:
    compilation = compile_yaml(
        """
        id: broken
        steps:
          - id: a
            kind: set
           with: {x: 1}
        """
    )
    error = the(compilation, "E001")
    assert (error.line, error.column) == (5, 4)
    assert error.message.startswith("invalid YAML:")
    assert not compilation.ok and compilation.plan is None
    assert [stage.status for stage in compilation.stages] == ["failed"] + ["skipped"] * 6


def test_tab_indentation_gets_a_hint() -> None:
    error = the(compile_yaml("id: tabs\nsteps:\n\t- id: a\n"), "E001")
    assert (error.line, error.column) == (3, 1)
    assert error.hint == "indent with spaces, not tabs"


def test_unquoted_colon_in_a_value_gets_a_hint() -> None:
    error = the(compile_yaml("id: x\ndescription: note: done\n"), "E001")
    assert error.line == 2
    assert "quote" in (error.hint or "")


def test_a_missing_comma_in_json_is_reported_where_the_comma_belongs() -> None:
    text = '{\n  "id": "x",\n  "steps": [\n    {"id": "a" "kind": "set"}\n  ]\n}'
    error = the(compile_source(text, "flow.json"), "E001")
    assert error.message == (
        "invalid JSON: expected ',' or '}' here but found '\"': a ',' is missing before it, "
        "or the mapping opened with { at 4:5 is never closed"
    )
    assert (error.line, error.column) == (4, 16)
    assert error.hint == "separate the mapping's items with ',' and close it with '}'"


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        # The list closes with the wrong bracket: the error is at the `[`, not at the `}`.
        (
            "id: x\nsteps:\n  - id: a\n    kind: set\n    with: {n: [1, 2}\n",
            (5, 15),
            "invalid YAML: the list opened with [ at 5:15 is never closed "
            "(at 5:20 YAML expected ',' or ']' but found '}')",
        ),
        # A flow list may span lines: YAML gives up only at the next key, two lines further.
        (
            "id: x\nsteps:\n  - id: a\n    kind: set\n    with:\n      n: [1, 2\n  - id: b\n",
            (6, 10),
            "invalid YAML: the list opened with [ at 6:10 is never closed "
            "(at 7:7 YAML expected ',' or ']' but found ':')",
        ),
        (
            "id: x\nsteps: [{id: a, kind: set, with: {n: 1}}\n",
            (2, 8),
            "invalid YAML: the list opened with [ at 2:8 is never closed "
            "(at 3:1 YAML expected ',' or ']' but the text ended)",
        ),
        (
            'id: x\ndescription: "Sync orders\nsteps: []\n',
            (2, 14),
            'invalid YAML: the string opened with " at 2:14 is never closed (the text ended inside it)',
        ),
        (
            "id: x\ndescription: 'it''s\n",
            (2, 14),
            "invalid YAML: the string opened with ' at 2:14 is never closed (the text ended inside it)",
        ),
    ],
)
def test_an_unclosed_bracket_or_quote_is_reported_where_it_opens(
    text: str, position: tuple[int, int], message: str
) -> None:
    error = the(compile_yaml(text), "E001")
    assert (error.message, (error.line, error.column)) == (message, position)
    assert error.hint and ("add the missing" in error.hint or "end the text with a closing" in error.hint)


def test_an_unclosed_json_bracket_is_reported_where_it_opens() -> None:
    text = '{\n  "id": "x",\n  "steps": [\n    {"id": "a", "kind": "set"}\n}\n'
    error = the(compile_source(text, "flow.json"), "E001")
    assert (error.line, error.column) == (3, 12)
    assert error.message == (
        "invalid JSON: the list opened with [ at 3:12 is never closed "
        "(at 5:1 JSON expected ',' or ']' but found '}')"
    )
    assert error.hint == "add the missing ']' (or remove a stray one before it)"


def test_an_unclosed_json_string_is_reported_where_it_opens() -> None:
    error = the(compile_source('{"id": "x", "name": "Sync}', "flow.json"), "E001")
    assert (error.line, error.column, error.message) == (
        1,
        21,
        "invalid JSON: the string at 1:21 is never closed",
    )
    assert error.hint and error.hint.startswith('end it with a closing "')


def test_a_missing_comma_in_a_yaml_flow_mapping_is_reported_where_the_comma_belongs() -> None:
    error = the(compile_yaml('id: x\nsteps:\n  - {id: a, kind: "set" with: {n: 1}}\n'), "E001")
    assert (error.line, error.column) == (3, 25)
    assert "a ',' is missing before it, or the mapping opened with { at 3:5 is never closed" in error.message


def test_every_yaml_syntax_error_has_a_hint() -> None:
    for text in ("a: *nope\n", "a: 1\n---\nb: 2\n", 'a: "x\\q"\n', "a: [1, 2]]\n", "a:\n  - b\n c: 1\n"):
        _, problems = parse_source(text)
        assert [p.code for p in problems] == ["E001"], text
        assert problems[0].hint, text


def test_a_bad_escape_in_double_quotes_gets_a_hint_about_backslashes() -> None:
    # The usual way in: jq's string interpolation written inside a double-quoted YAML string.
    error = the(compile_yaml('id: x\ndescription: "total \\(.n)"\n'), "E001")
    assert "backslash" in (error.hint or "")


def test_json_file_with_a_trailing_comma_is_an_error() -> None:
    error = the(compile_source('{"id": "x", "steps": [],}', "flow.json"), "E001")
    assert error.message == "invalid JSON: Expecting property name enclosed in double quotes"
    assert (error.line, error.column) == (1, 25)


def test_yaml_flow_style_that_looks_like_json_still_parses() -> None:
    compilation = compile_source(
        "{id: flow, steps: [{id: a, kind: set, with: {x: 1}}], outputs: '${ .steps.a.output }'}"
    )
    assert compilation.ok, compilation.diagnostics


def test_duplicate_yaml_key_is_rejected_at_the_second_key() -> None:
    compilation = compile_yaml(
        """
        id: dup
        steps:
          - id: a
            kind: set
            kind: http
        """
    )
    error = the(compilation, "E002")
    assert error.message == "duplicate key 'kind' in a mapping"
    assert (error.line, error.column) == (5, 5)


def test_duplicate_json_key_is_rejected_with_its_position() -> None:
    error = the(compile_source('{"id": "a",\n "id": "b", "steps": []}'), "E002")
    assert (error.line, error.column) == (2, 2)


def test_empty_document_is_reported() -> None:
    assert the(compile_yaml("# only a comment\n"), "E004").message == "the definition is empty"


def test_a_list_at_the_top_level_is_not_a_definition() -> None:
    error = the(compile_yaml("- id: a\n- id: b\n"), "E004")
    assert "found a list" in error.message


def test_oversized_source_is_refused_before_parsing() -> None:
    error = the(compile_source("#" * (MAX_SOURCE_CHARS + 1)), "E003")
    assert "limit" in error.message


def test_yaml_tags_and_non_text_keys_are_refused_with_their_position() -> None:
    tag = the(compile_yaml("id: x\nname: !secret abc\nsteps: []\n"), "E005")
    assert (tag.line, tag.column, tag.path) == (2, 7, "/name")
    key = the(
        compile_yaml("id: x\nsteps: []\ninputs: {type: object, properties: {1: {type: string}}}\n"), "E005"
    )
    assert "quote the key" in (key.hint or "")


def test_alias_bombs_are_stopped() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    error = the(compile_yaml("\n".join(lines) + "\n"), "E005")
    assert "more than" in error.message


def test_positions_cover_keys_values_and_items() -> None:
    source, problems = parse_source("id: x\nsteps:\n  - id: a\n    needs: [b, c]\n")
    assert not problems and source is not None
    positions = source.positions
    assert positions[("id",)] == (1, 5)
    assert positions.key(("steps",)) == (2, 1)
    assert positions[("steps", 0)] == (3, 5)
    assert positions[("steps", 0, "needs", 1)] == (4, 16)
    assert positions.locate(("steps", 0, "kind")) == (3, 5)  # missing: where its parent starts
    assert ("steps", 0, "needs", 0) in dict(positions)


def test_json_positions_are_found_when_a_diagnostic_needs_them() -> None:
    text = json.dumps({"id": "x", "steps": [{"id": "a", "kind": "set", "needs": ["zz"]}]}, indent=2)
    error = the(compile_source(text, "flow.json"), "E103")
    assert (error.line, error.column) == (8, 9)
    assert error.path == "/steps/0/needs/0"


def test_dates_in_yaml_stay_text() -> None:
    compilation = compile_yaml(
        """
        id: dates
        steps:
          - {id: a, kind: set, with: {day: 2024-01-31}}
        outputs: "${ .steps.a.output }"
        """
    )
    assert compilation.plan is not None
    assert compilation.plan.root.steps[0].with_ == {"day": "2024-01-31"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", "yes"),  # YAML 1.2: only true/false are booleans
        ("on", "on"),
        ("No", "No"),
        ("true", True),
        ("FALSE", False),
        ("~", None),
        ("null", None),
        ("", None),
        ("012", 12),
        ("0o17", 15),
        ("0x1F", 31),
        ("-0b101", -5),
        ("1_000", 1000),
        ("1.5e3", 1500.0),
        (".5", 0.5),
        ("1:30", "1:30"),  # no sexagesimal numbers
        ("2024-01-31T10:00:00Z", "2024-01-31T10:00:00Z"),  # times stay the text written
        ("'yes'", "yes"),
        ("!!str 12", "12"),
        ("!!float 1", 1.0),
        ("=", "="),
    ],
)
def test_scalars_follow_the_yaml_1_2_core_schema(text: str, value: object) -> None:
    source, problems = parse_source(f"k: {text}\n")
    assert not problems and source is not None
    assert source.data["k"] == value
    assert type(source.data["k"]) is type(value)


def test_a_yaml_1_1_directive_does_not_bring_back_yes_and_no() -> None:
    source, _ = parse_source("%YAML 1.1\n---\nk: yes\n")
    assert source is not None and source.data == {"k": "yes"}


def test_merge_keys_and_aliases_work_and_explicit_keys_win() -> None:
    source, problems = parse_source(
        "defaults: &d {retry: {max_attempts: 5}, timeout: 10s}\nstep:\n  <<: *d\n  timeout: 30s\nagain: *d\n"
    )
    assert not problems and source is not None
    assert source.data["step"] == {"retry": {"max_attempts": 5}, "timeout": "30s"}
    assert source.data["again"] == {"retry": {"max_attempts": 5}, "timeout": "10s"}
    assert source.positions[("again", "retry", "max_attempts")] == (1, 37)  # where the anchor's value is
    assert source.positions[("again",)] == (5, 8)  # the alias itself


@pytest.mark.parametrize(
    ("text", "code", "position", "message"),
    [
        ("a: *nope\n", "E001", (1, 4), "invalid YAML: found undefined alias 'nope'"),
        ("a: &x [1, *x]\n", "E005", (1, 11), "an alias refers to a value that contains it"),
        ("a: 1\n---\nb: 2\n", "E001", (2, 1), "invalid YAML: expected a single document, found another"),
        ("a: x\x01\n", "E001", (1, 5), "invalid YAML: unacceptable character #x0001"),
        ("a: .nan\n", "E005", (1, 4), "nan is not a finite number"),
        ("a: !!set {x}\n", "E005", (1, 4), "YAML tag '!!set' is not supported"),
        ("a: !!binary aGk=\n", "E005", (1, 4), "YAML tag '!!binary' is not supported"),
        ("a: !!int x\n", "E005", (1, 4), "'x' is not a valid !!int"),
        ("? [a]\n: 1\n", "E005", (1, 3), "mapping keys must be text, found a list"),
        ("a:\n  b: 1\n  c: 2\n  b: 3\n", "E002", (4, 3), "duplicate key 'b' in a mapping"),
        ("a: `cmd`\n", "E001", (1, 4), "invalid YAML: found character that cannot start any token"),
    ],
)
def test_yaml_problems_are_reported_where_they_are(
    text: str, code: str, position: tuple[int, int], message: str
) -> None:
    _, problems = parse_source(text)
    assert [(p.code, (p.line, p.column)) for p in problems] == [(code, position)]
    assert problems[0].message.startswith(message)


def test_deeply_nested_yaml_is_refused_without_crashing() -> None:
    for text in ("[" * 100_000 + "]" * 100_000, "- " * 100_000 + "x", "a: " * 50_000 + "x"):
        _, problems = parse_source(text)
        assert [p.code for p in problems] == ["E001"], text[:10]
        assert "nested too deeply" in problems[0].message or "mapping values" in problems[0].message


def test_yaml_columns_count_characters_not_bytes() -> None:
    error = the(compile_yaml('id: x\nsteps:\n  - {name: "é", id: a, kind: ü}\n'), "E104")
    assert (error.line, error.column) == (3, 30)


def test_a_backquote_gets_a_quoting_hint() -> None:
    assert (
        the(compile_yaml("id: x\ndescription: `date`\n"), "E001").hint
        == "quote values that start with @ or `"
    )
