"""Run parameters: defaults applied, every violation listed with its path, CLI values typed."""

from __future__ import annotations

import pytest

from rte.errors import json_type_name
from workflows.params import ParamsError, parse_cli_params, validate_params

SCHEMA = {
    "type": "object",
    "required": ["customer"],
    "additionalProperties": False,
    "properties": {
        "customer": {"type": "string", "minLength": 2},
        "limit": {"type": "integer", "minimum": 1, "default": 10},
        "mode": {"type": "string", "enum": ["fast", "safe"], "default": "safe"},
        "email": {"type": "string", "format": "email"},
        "ratio": {"type": "number"},
        "dry_run": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "filter": {
            "type": "object",
            "default": {},
            "properties": {
                "status": {"type": "string", "default": "new"},
                "max": {"type": ["integer", "null"]},
            },
        },
    },
}


def test_defaults_are_applied_in_nested_objects_too() -> None:
    assert validate_params(SCHEMA, {"customer": "c1"}) == {
        "customer": "c1", "limit": 10, "mode": "safe", "filter": {"status": "new"},
    }  # fmt: skip


def test_given_values_win_over_defaults() -> None:
    params = validate_params(SCHEMA, {"customer": "c1", "limit": 3, "filter": {"status": "old"}})
    assert (params["limit"], params["filter"]) == (3, {"status": "old"})


def test_every_violation_is_listed_with_its_path() -> None:
    with pytest.raises(ParamsError) as raised:
        validate_params(
            SCHEMA,
            {
                "limit": 0,
                "mode": "slow",
                "email": "nope",
                "tags": ["a", 2],
                "extra": 1,
                "filter": {"max": "x"},
            },
        )
    assert raised.value.violations == [
        {"path": "$.customer", "message": "is required"},
        {"path": "$.email", "message": '"nope" is not a "email"'},
        {"path": "$.extra", "message": "is not a declared parameter"},
        {"path": "$.filter.max", "message": 'expected integer or null, got "x"'},
        {"path": "$.limit", "message": "0 is less than the minimum of 1"},
        {"path": "$.mode", "message": '"slow" is not one of ["fast", "safe"]'},
        {"path": "$.tags[1]", "message": "expected string, got 2"},
    ]
    assert raised.value.category == "validation"
    assert str(raised.value).startswith("invalid parameters: $.customer: is required; ")


def test_parameters_must_be_an_object() -> None:
    with pytest.raises(ParamsError) as raised:
        validate_params(SCHEMA, ["c1"])  # type: ignore[arg-type]
    assert raised.value.violations == [
        {"path": "$", "message": "parameters must be an object of named values"}
    ]


def test_cli_values_are_typed_by_the_schema() -> None:
    assert parse_cli_params(
        SCHEMA,
        ["customer=42", "limit=5", "ratio=0.5", "dry_run=yes", 'tags=["a","b"]', "filter.status=old",
         "filter.max=null", "note=free text=ok"],
    ) == {
        "customer": "42", "limit": 5, "ratio": 0.5, "dry_run": True, "tags": ["a", "b"],
        "filter": {"status": "old", "max": None}, "note": "free text=ok",
    }  # fmt: skip


@pytest.mark.parametrize("text", ["true", "yes", "1", "TRUE"])
def test_cli_booleans_accept_the_usual_spellings(text: str) -> None:
    assert parse_cli_params(SCHEMA, [f"dry_run={text}"]) == {"dry_run": True}


def test_bad_cli_values_name_their_key() -> None:
    with pytest.raises(ParamsError) as raised:
        parse_cli_params(SCHEMA, ["limit=ten", "dry_run=maybe", "tags=[1", "novalue", "ratio=fast"])
    assert raised.value.violations == [
        {"path": "$.limit", "message": "limit: expected an integer, got 'ten'"},
        {"path": "$.dry_run", "message": "dry_run: expected true or false (or yes/no, 1/0), got 'maybe'"},
        {
            "path": "$.tags",
            "message": "tags: expected JSON for an array: Expecting ',' delimiter at column 3",
        },
        {"path": "$", "message": "expected key=value, got 'novalue'"},
        {"path": "$.ratio", "message": "ratio: expected a number, got 'fast'"},
    ]


def test_cli_keys_cannot_be_both_a_value_and_an_object() -> None:
    with pytest.raises(ParamsError) as raised:
        parse_cli_params(SCHEMA, ["filter=1", "filter.max=2"])
    assert "expected a JSON object" in raised.value.violations[0]["message"]
    with pytest.raises(ParamsError, match="already set"):
        parse_cli_params({}, ["a=1", "a.b=2"])


def test_violations_name_values_and_types_as_json_not_python() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "on": {"type": "boolean"}, "tags": {"type": "array"}},
    }
    with pytest.raises(ParamsError) as raised:
        validate_params(schema, {"name": None, "on": "yes", "tags": {"a": 1}})
    messages = {v["path"]: v["message"] for v in raised.value.violations}
    assert messages == {
        "$.name": "expected string, got null",
        "$.on": 'expected boolean, got "yes"',
        "$.tags": 'expected array, got {"a": 1}',
    }
    assert not any(word in str(raised.value) for word in ("None", "NoneType", "True", "dict"))


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "boolean"),
        (1, "number"),
        (1.5, "number"),
        ("x", "string"),
        ([1], "array"),
        ({}, "object"),
    ],
)
def test_type_names_in_error_texts_are_json_names(value: object, name: str) -> None:
    assert json_type_name(value) == name
