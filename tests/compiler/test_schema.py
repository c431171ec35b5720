"""Schema stage: pydantic errors become diagnostics at the offending value; the published JSON Schema
matches the models."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft202012Validator
from ruamel.yaml import YAML

from tests.compiler import codes, compile_yaml, the
from workflows.definition import KINDS, definition_json_schema

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_kind_lists_every_kind() -> None:
    error = the(compile_yaml("id: x\nsteps:\n  - {id: a, kind: lambda}\n"), "E104")
    assert error.message == "unknown step kind 'lambda'"
    assert error.hint == f"the kinds are: {', '.join(KINDS)}"
    assert (error.line, error.column) == (3, 19)


def test_wrong_type_points_at_the_value() -> None:
    compilation = compile_yaml(
        """
        id: x
        max_concurrency: many
        steps:
          - id: a
            kind: set
            needs: a
        """
    )
    concurrency, needs = compilation.diagnostics
    assert (concurrency.code, concurrency.line, concurrency.column) == ("E101", 2, 18)
    assert concurrency.message == "`max_concurrency` should be a valid integer, found 'many'"
    assert (needs.line, needs.column, needs.path) == (6, 12, "/steps/0/needs")
    assert needs.message == "step 'a': `needs` should be a valid list, found 'a'"
    assert needs.hint == "write a list, e.g. [a, b]"


def test_missing_required_field_points_at_its_parent() -> None:
    compilation = compile_yaml(
        """
        id: x
        steps:
          - id: loop
            kind: set
            for_each:
              concurrency: 2
        """
    )
    error = the(compilation, "E101")
    assert error.message == "step 'loop': `for_each` is missing the required field `items`"
    assert (error.line, error.column) == (5, 5)


def test_a_definition_without_steps_is_told_so() -> None:
    error = the(compile_yaml("id: x\nsteps: []\n"), "E101")
    assert error.message == "`steps` should have at least 1 item"


def test_duration_of_the_wrong_type_names_the_formats() -> None:
    error = the(
        compile_yaml("id: x\nsteps:\n  - {id: a, kind: http, timeout: [1], with: {url: u}}\n"), "E101"
    )
    assert "should be a valid string or a valid integer or a valid number" in error.message
    assert "30s" in (error.hint or "")


def test_schema_errors_do_not_stop_checks_of_the_valid_steps() -> None:
    compilation = compile_yaml(
        """
        id: x
        steps:
          - {id: a, kind: sett}
          - id: b
            kind: set
            needs: [a, ghost]
            with: {v: "${ now }"}
        outputs: "${ .steps.b.output }"
        """
    )
    assert codes(compilation) == ["E104", "E103", "E202"]  # `a` is known even though it is invalid
    assert [stage.status for stage in compilation.stages] == [
        "ok", "failed", "failed", "failed", "ok", "skipped", "skipped"
    ]  # fmt: skip


def test_inputs_must_be_a_valid_object_schema() -> None:
    bad_type = the(compile_yaml("id: x\ninputs: {type: objekt}\nsteps: [{id: a, kind: set}]\n"), "E101")
    assert bad_type.message.startswith("`inputs` is not a valid JSON Schema")
    assert bad_type.path == "/inputs/type"
    not_object = the(compile_yaml("id: x\ninputs: {type: array}\nsteps: [{id: a, kind: set}]\n"), "E101")
    assert "type object" in not_object.message


def test_an_input_default_must_match_its_own_schema() -> None:
    compilation = compile_yaml(
        """
        id: x
        inputs:
          type: object
          properties:
            limit: {type: integer, minimum: 1, default: 0}
        steps: [{id: a, kind: set}]
        """
    )
    error = the(compilation, "E101")
    assert (
        error.message
        == "the default of input 'limit' does not match its own schema: 0 is less than the minimum of 1"
    )
    assert (error.line, error.column) == (5, 49)


def test_malformed_switch_cases_are_kind_parameter_errors() -> None:
    compilation = compile_yaml(
        """
        id: x
        steps:
          - id: route
            kind: switch
            with:
              cases:
                - {name: a, when: true, then: b}
                - {when: false}
        """
    )
    then_error, name_error = compilation.diagnostics
    assert (then_error.code, then_error.line, then_error.column) == ("E105", 7, 39)
    assert name_error.message == "step 'route': `with.cases[1]` is missing the required field `name`"


def test_published_schema_is_up_to_date() -> None:
    published = json.loads((ROOT / "schemas" / "rte-workflow.schema.json").read_text())
    assert published == definition_json_schema(), "regenerate: rte schema > schemas/rte-workflow.schema.json"


def test_published_schema_accepts_the_examples_and_requires_kind_parameters() -> None:
    schema = definition_json_schema()
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        if example.name.endswith(".sw.yaml"):
            continue  # a Serverless Workflow document: tests/test_examples.py checks it against its spec
        assert list(validator.iter_errors(YAML(typ="safe").load(example.read_text()))) == [], example.name
    missing_url = {"id": "x", "steps": [{"id": "a", "kind": "http", "with": {"method": "GET"}}]}
    assert [error.message for error in validator.iter_errors(missing_url)] == ["'url' is a required property"]
