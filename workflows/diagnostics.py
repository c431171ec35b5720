"""Compiler diagnostics: what is wrong, where (line:column and path), and how to fix it.

Codes (the first letter gives the severity, the first digit the stage):

- E0xx parse and format detection: E001 syntax (workflows/syntax_errors.py), E002 duplicate key, E003 source too large,
  E004 not a mapping, E005 unsupported YAML value, E010 Serverless Workflow not supported by this build
- E1xx schema and references: E101 schema violation, E102 duplicate step id, E103 unknown step in
  needs/then/default, E104 unknown kind, E105 missing or malformed kind parameter, E106 connection not
  declared, E107 bad duration
- E2xx expressions: E201 jq syntax (hints: workflows/jq_hints.py), E202 forbidden builtin, E203 reads an unknown step, E204 reads a step
  that is not upstream
- E3xx graph: E301 cycle, E302 step that can never run
- W3xx warnings: W301 unused output of a pure step, W302 unknown `with` key, W303 `local` on a
  for_each step (its items always run as regular activities)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel, Field, ValidationError

Severity = Literal["error", "warning", "info"]
DataPath = tuple[str | int, ...]

_SEVERITY_BY_PREFIX: dict[str, Severity] = {"E": "error", "W": "warning", "I": "info"}


class Diagnostic(BaseModel):
    code: str = Field(description="Stable code, e.g. E103.", examples=["E103"])
    severity: Severity
    message: str
    line: int | None = Field(None, description="1-based line of the offending text.")
    column: int | None = Field(None, description="1-based column of the offending text.")
    path: str = Field("", description="JSON pointer into the definition, e.g. /steps/2/needs/0.")
    hint: str | None = Field(None, description="How to fix it.")

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def make_diagnostic(
    code: str,
    message: str,
    path: DataPath = (),
    position: tuple[int, int] | None = None,
    hint: str | None = None,
) -> Diagnostic:
    """A diagnostic whose severity follows from its code (E… error, W… warning, I… info)."""
    line, column = position if position else (None, None)
    return Diagnostic(
        code=code,
        severity=_SEVERITY_BY_PREFIX.get(code[:1], "error"),
        message=message,
        line=line,
        column=column,
        path=json_pointer(path),
        hint=hint,
    )


def json_pointer(path: DataPath) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def format_diagnostic(diagnostic: Diagnostic, filename: str = "<input>") -> str:
    """`flow.yaml:12:7: error E103: step 'b' needs unknown step 'x'` and an indented hint line."""
    where = filename
    if diagnostic.line is not None:
        where += f":{diagnostic.line}"
        if diagnostic.column is not None:
            where += f":{diagnostic.column}"
    text = f"{where}: {diagnostic.severity} {diagnostic.code}: {diagnostic.message}"
    if diagnostic.hint:
        text += f"\n    hint: {diagnostic.hint}"
    return text


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(diagnostic.is_error for diagnostic in diagnostics)


def sorted_by_position(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Source order, the way compilers print; diagnostics without a position come first."""
    return sorted(diagnostics, key=lambda d: (d.line or 0, d.column or 0))


class Locator(Protocol):
    def locate(self, path: DataPath, *, at_key: bool = False) -> tuple[int, int] | None: ...


def validation_diagnostics(
    error: ValidationError,
    data: Any,
    positions: Locator,
    model: type[BaseModel],
    base: DataPath = (),
    code: str = "E101",
) -> list[Diagnostic]:
    """One diagnostic per offending value of a pydantic error, at the value's position (a missing
    value at its parent's key); the errors of one union ("string or number") merge into one.

    `data` is the whole document and `model` was validated against the value at `base` in it.
    """
    groups: dict[DataPath, list[Any]] = {}
    for item in error.errors():
        groups.setdefault(_data_path(data, (*base, *item["loc"]), item["type"]), []).append(item)
    found: list[Diagnostic] = []
    for path, items in groups.items():
        first = items[0]
        position = positions.locate(path, at_key=first["type"] == "extra_forbidden")
        if first["type"] == "literal_error" and path[-1:] == ("kind",) and path[:1] == ("steps",):
            found.append(_unknown_kind(first["input"], path, position))
            continue
        hint = None
        if first["type"] == "missing":
            message = f"{_owner(path, data)} is missing the required field `{path[-1]}`"
        elif first["type"] == "extra_forbidden":
            message = f"{_owner(path, data)} has an unknown field `{path[-1]}`"
            hint = _suggest(str(path[-1]), _allowed_fields(model, path[len(base) : -1]), "fields")
        elif first["type"] in ("too_short", "too_long"):
            bound = "at least" if first["type"] == "too_short" else "at most"
            limit = first["ctx"].get("min_length" if first["type"] == "too_short" else "max_length")
            message = f"{_subject(path, data)} should have {bound} {limit} item{'s' * (limit != 1)}"
        else:
            message = f"{_subject(path, data)} {_problem(items)}, found {_summary(first.get('input'))}"
            hint = _hint(first, path)
        found.append(make_diagnostic(code, message, path, position, hint))
    return found


def _data_path(data: Any, loc: tuple[Any, ...], error_type: str) -> DataPath:
    """The part of a pydantic `loc` that addresses the data (union member tags are dropped)."""
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        if (
            isinstance(node, dict)
            and isinstance(part, str)
            and part in node
            or isinstance(node, list)
            and isinstance(part, int)
            and 0 <= part < len(node)
        ):
            node = node[part]
        elif error_type == "missing" and index == len(loc) - 1 and isinstance(node, dict):
            node = None
        else:
            continue
        path.append(part)
    return tuple(path)


def _subject(path: DataPath, data: Any) -> str:
    if not path:
        return "the definition"
    if path[0] == "steps" and len(path) >= 2 and isinstance(path[1], int):
        field_path = path[2:]
        label = _step_label(data, path[1])
        return f"{label}: `{_dotted(field_path)}`" if field_path else label
    return f"`{_dotted(path)}`"


def _owner(path: DataPath, data: Any) -> str:
    owner = path[:-1]
    if not owner:
        return "the definition"
    return _subject(owner, data)


def _step_label(data: Any, index: int) -> str:
    try:
        step_id = data["steps"][index]["id"]
    except (KeyError, IndexError, TypeError):
        step_id = None
    return f"step '{step_id}'" if isinstance(step_id, str) else f"step #{index + 1}"


def _dotted(path: DataPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _problem(items: list[Any]) -> str:
    wanted: list[str] = []
    for item in items:
        message = str(item["msg"]).removeprefix("Value error, ")
        message = message.removeprefix("Input should be ").split(", unable to")[0]
        message = message.replace("String should match pattern", "a text matching")
        message = message.replace("List should have", "a list with").replace(" after validation", "")
        if message not in wanted:
            wanted.append(message)
    return "should be " + " or ".join(wanted)


def _summary(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _hint(item: Any, path: DataPath) -> str | None:
    if item["type"] == "string_type" and isinstance(item.get("input"), int | float):
        return f'quote it to make it text, e.g. "{item["input"]}"'
    if item["type"] == "list_type":
        return "write a list, e.g. [a, b]"
    if path and path[-1] in ("timeout", "initial_interval", "max_interval", "duration"):
        return "write a duration: seconds (10), 250ms, 30s, 5m, 1h30m, 1d or PT30S"
    if item["type"] == "string_pattern_mismatch" and path[-1:] == ("id",):
        if len(path) == 1:
            return "use lowercase letters, digits, '-' and '_', starting with a letter or digit"
        return "use letters, digits, '-' and '_', starting with a letter or '_'"
    return None


def _unknown_kind(value: Any, path: DataPath, position: tuple[int, int] | None) -> Diagnostic:
    from workflows.definition import KINDS  # the table of kinds lives with the format

    kinds = ", ".join(KINDS)
    hint = _suggest(str(value), list(KINDS), "kinds") or f"the kinds are: {kinds}"
    return make_diagnostic("E104", f"unknown step kind {_summary(value)}", path, position, hint)


def _suggest(word: str, choices: list[str], noun: str) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1)
    listing = f"the {noun} are: {', '.join(choices)}" if choices else None
    if close:
        return f"did you mean '{close[0]}'? " + (listing or "")
    return listing


def _allowed_fields(model: type[BaseModel], path: DataPath) -> list[str]:
    """The field names (aliases) the model expects at `path`, found by following its annotations."""
    current: type[BaseModel] | None = model
    for part in path:
        if current is None:
            return []
        if isinstance(part, int):
            continue
        field = next(
            (f for name, f in current.model_fields.items() if (f.alias or name) == part),
            None,
        )
        current = _model_in(field.annotation) if field else None
    if current is None:
        return []
    return [field.alias or name for name, field in current.model_fields.items()]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None
