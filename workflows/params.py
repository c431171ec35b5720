"""Run parameters: apply the defaults of a plan's input schema and validate against it.

Used by the API before it starts a run and by the CLI, which also turns `key=value` arguments into
typed values by reading the types the schema declares.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError as SchemaViolation

from rte.errors import EngineError, ErrorCategory, json_type_name

_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


class ParamsError(EngineError):
    """Parameters that do not match the input schema; `.violations` lists every problem found."""

    def __init__(self, violations: list[dict[str, str]]) -> None:
        summary = "; ".join(f"{v['path']}: {v['message']}" for v in violations[:5])
        more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
        super().__init__(
            ErrorCategory.VALIDATION,
            f"invalid parameters: {summary}{more}",
            details={"violations": violations},
        )
        self.violations = violations


def validate_params(input_schema: dict[str, Any], params: dict[str, Any] | None) -> dict[str, Any]:
    """The parameters with defaults applied; ParamsError listing every violation otherwise."""
    if params is not None and not isinstance(params, dict):
        raise ParamsError([{"path": "$", "message": "parameters must be an object of named values"}])
    result = apply_defaults(input_schema, copy.deepcopy(params or {}))
    validator = Draft202012Validator(input_schema, format_checker=FormatChecker())
    violations = [v for error in validator.iter_errors(result) for v in _violations(error)]
    if violations:
        raise ParamsError(sorted(violations, key=lambda v: v["path"]))
    return result


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill in absent properties that declare a `default`, in nested objects too."""
    if not isinstance(schema, dict) or not isinstance(value, dict):
        return value
    for name, property_schema in (schema.get("properties") or {}).items():
        if not isinstance(property_schema, dict):
            continue
        if name not in value and "default" in property_schema:
            value[name] = copy.deepcopy(property_schema["default"])
        if name in value:
            value[name] = apply_defaults(property_schema, value[name])
    return value


def _violations(error: SchemaViolation) -> list[dict[str, str]]:
    path = list(error.absolute_path)
    if error.validator == "required":
        # "'customer' is a required property" belongs to $.customer, not to its parent.
        match = re.fullmatch(r"(.+) is a required property", error.message)
        if match:
            return [{"path": json_path([*path, ast.literal_eval(match.group(1))]), "message": "is required"}]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        if not schema.get("patternProperties"):
            declared = schema.get("properties") or {}
            return [
                {"path": json_path([*path, name]), "message": "is not a declared parameter"}
                for name in error.instance
                if name not in declared
            ]
    return [{"path": json_path(path), "message": violation_message(error)}]


def violation_message(error: SchemaViolation) -> str:
    """jsonschema's message with values written as JSON, as the caller sent them: `null`, `true`,
    `"text"` — not Python's `None`, `True`, `'text'`."""
    if error.validator == "type":
        expected = (
            error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        )
        return f"expected {' or '.join(str(name) for name in expected)}, got {_shown(error.instance)}"
    message = error.message
    for value in (error.instance, error.validator_value):
        python, shown = repr(value), _shown(value)
        if python != shown:
            message = message.replace(python, shown)
    return message


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else f"{json_type_name(value)} {text[:60]}…"


def json_path(path: Iterable[str | int]) -> str:
    text = "$"
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


def parse_cli_params(input_schema: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """`["limit=5", "filter.status=new", "tags=[\\"a\\"]"]` → typed parameters, by the schema's types.

    Integers, numbers and booleans (true/false/yes/no/1/0) are converted, arrays and objects are read
    as JSON, dotted keys build nested objects. Defaults and validation are `validate_params`' job.
    """
    result: dict[str, Any] = {}
    violations: list[dict[str, str]] = []
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        key = key.strip()
        if not separator or not key:
            violations.append({"path": "$", "message": f"expected key=value, got {assignment!r}"})
            continue
        parts = key.split(".")
        if any(not part for part in parts):
            violations.append({"path": "$", "message": f"invalid parameter name {key!r}"})
            continue
        try:
            value = _coerce(text, _declared_types(input_schema, parts))
            _assign(result, parts, value)
        except ValueError as error:
            violations.append({"path": json_path(parts), "message": f"{key}: {error}"})
    if violations:
        raise ParamsError(violations)
    return result


def _declared_types(schema: dict[str, Any], parts: list[str]) -> list[str]:
    node: Any = schema
    for part in parts:
        properties = node.get("properties") if isinstance(node, dict) else None
        node = properties.get(part) if isinstance(properties, dict) else None
        if node is None:
            return []
    declared = node.get("type") if isinstance(node, dict) else None
    if isinstance(declared, str):
        return [declared]
    return [t for t in declared if isinstance(t, str)] if isinstance(declared, list) else []


def _coerce(text: str, types: list[str]) -> Any:
    if not types:
        return text  # undeclared: keep the text; validation decides whether it is welcome
    problems: list[str] = []
    for declared in types:
        try:
            return _as_type(text, declared)
        except ValueError as error:
            problems.append(str(error))
    raise ValueError(" or ".join(problems))


def _as_type(text: str, declared: str) -> Any:
    if declared == "string":
        return text
    if declared == "integer":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if declared == "number":
        try:
            return int(text.strip())
        except ValueError:
            pass
        try:
            number = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"expected a finite number, got {text!r}")
        return number
    if declared == "boolean":
        try:
            return _BOOLEANS[text.strip().lower()]
        except KeyError:
            raise ValueError(f"expected true or false (or yes/no, 1/0), got {text!r}") from None
    if declared == "null":
        if text.strip().lower() in ("null", ""):
            return None
        raise ValueError(f"expected null, got {text!r}")
    if declared in ("array", "object"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"expected JSON for an {declared}: {error.msg} at column {error.colno}"
            ) from None
        expected = list if declared == "array" else dict
        if not isinstance(value, expected):
            raise ValueError(f"expected a JSON {declared}, got {text!r}")
        return value
    return text


def _assign(result: dict[str, Any], parts: list[str], value: Any) -> None:
    node = result
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"'{'.'.join(parts[: depth + 1])}' is already set to a value, not an object")
        node = child
    if isinstance(node.get(parts[-1]), dict) and not isinstance(value, dict):
        raise ValueError("is already set by nested keys")
    node[parts[-1]] = value
