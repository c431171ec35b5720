"""Runtime expressions of Serverless Workflow documents: normalised for the plan, checked before a run.

The plan evaluates templates one way (`workflows.expressions.evaluate_template`: a string that is
exactly `${ program }` is a jq program, `${ }` inside other text is interpolated). The DSL has two
evaluation modes and two kinds of fields, so the lowering rewrites values into that one form:

- fields that are always expressions (`if`, `when`, `for.in`, `while`, and `input.from`,
  `output.as`, `export.as` when they are strings) take bare jq as well as `${ }` — the conformance
  kit writes `output.as: .id`;
- value fields (`set`, `with`, `body`, …) are literals unless the whole string is `${ }` (strict
  mode, the default); in loose mode `${ }` inside text is interpolated. A strict-mode literal that
  happens to contain `${` becomes a jq string literal, so it stays literal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import jq

from rte.errors import ExpressionError
from workflows.expressions import FORBIDDEN_BUILTINS, split_template
from workflows.jq_hints import jq_syntax_hint

EvaluationMode = Literal["strict", "loose"]

# The arguments the spec defines for every runtime expression (`$secrets` only reaches
# authentication policies, where it names a connection; see `workflows/swf/auth.py`).
ARGUMENTS = ("context", "input", "output", "workflow", "task", "runtime")
SECRETS = "secrets"


def whole_expression(value: str) -> str | None:
    """The program of a string that is exactly one `${ program }`, else None."""
    try:
        parts = split_template(value)
    except ExpressionError:
        return None
    if parts and len(parts) == 1 and parts[0].is_expression:
        return parts[0].text
    return None


def as_program(value: str) -> str:
    """A field that is always an expression: `${ p }` or bare `p` → `p`."""
    program = whole_expression(value)
    return program if program is not None else value.strip()


def as_template(value: Any, mode: EvaluationMode) -> Any:
    """A value field → the plan's template form (see the module docstring)."""
    if isinstance(value, str):
        if mode == "loose" or "${" not in value or whole_expression(value) is not None:
            return value
        return "${ " + json.dumps(value) + " }"  # literal text that contains `${`
    if isinstance(value, dict):
        return {key: as_template(item, mode) for key, item in value.items()}
    if isinstance(value, list):
        return [as_template(item, mode) for item in value]
    return value


def as_transform(value: Any, mode: EvaluationMode) -> Any:
    """`input.from`, `output.as`, `export.as`: a string is an expression, an object a template."""
    if isinstance(value, str):
        return "${ " + as_program(value) + " }"
    return as_template(value, mode)


def programs(template: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every jq program of a normalised template, with the path of the value holding it."""
    if isinstance(template, str):
        try:
            parts = split_template(template) or []
        except ExpressionError:
            return
        for part in parts:
            if part.is_expression:
                yield path, part.text
    elif isinstance(template, dict):
        for key, item in template.items():
            yield from programs(item, (*path, key))
    elif isinstance(template, list):
        for index, item in enumerate(template):
            yield from programs(item, (*path, index))


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    hint: str | None = None


def check(program: str, variables: frozenset[str], secrets_allowed: bool = False) -> list[Problem]:
    """What is wrong with a program before it runs: forbidden builtins, `$secrets`, jq syntax and
    unknown variables (jq itself reports `$x is not defined` when compiled with the known ones)."""
    words = scan(program)
    forbidden = sorted({name for name, role in words if role == "call" and name in FORBIDDEN_BUILTINS})
    forbidden += sorted({name for name, role in words if role == "variable" and name in FORBIDDEN_BUILTINS})
    if forbidden:
        return [
            Problem(
                "E202",
                f"'{name}' is not allowed in expressions: it is not deterministic or reaches outside the workflow",
                "pass the value in as workflow input, or compute it in a Python function (`call: <function>`)",
            )
            for name in forbidden
        ]
    if not secrets_allowed and ("$" + SECRETS, "variable") in words:
        return [
            Problem(
                "E205",
                "`$secrets` can only be used in an authentication policy: secrets never enter the workflow's data",
                "write `authentication: {bearer: {use: <connection>}}` (or basic), or "
                "`token: ${ $secrets.<connection>.token }`; the worker adds the credentials",
            )
        ]
    names = sorted(variables | ({SECRETS} if secrets_allowed else set()))
    try:
        jq.compile(program, args=dict.fromkeys(names))
    except ValueError as error:
        message = _jq_message(error)
        hint = _variable_hint(error, names) or jq_syntax_hint(program, message, tuple(names))
        return [Problem("E201", f"invalid jq: {message} in ${{ {program} }}", hint)]
    return []


def scan(program: str) -> set[tuple[str, str]]:
    """The names a jq program uses outside string literals (interpolations included), each with its
    role: `variable` ($x), `field` (.x), `key` ({x: …}) or `call` (a builtin or function)."""
    found: set[tuple[str, str]] = set()
    brackets: list[str] = []  # "(", "[", "{" or "\\(" for a string interpolation
    in_string = False
    index = 0
    while index < len(program):
        char = program[index]
        if in_string:
            if char == "\\" and program.startswith("(", index + 1):
                brackets.append("\\(")
                in_string = False
                index += 2
                continue
            if char == '"':
                in_string = False
            index += 2 if char == "\\" else 1
            continue
        match = _WORD.match(program, index)
        if match:
            found.add((match.group(), _role(program, index, match.end(), brackets)))
            index = match.end()
            continue
        if char == '"':
            in_string = True
        elif char == "#":
            newline = program.find("\n", index)
            index = len(program) if newline < 0 else newline
            continue
        elif char in "([{":
            brackets.append(char)
        elif char in ")]}" and brackets and brackets.pop() == "\\(":
            in_string = True
        index += 1
    return found


def secret_references(program: str) -> list[tuple[str, str | None]]:
    """`$secrets.name.field` and `$secrets.name` references: (name, field or None)."""
    return [(m.group(1), m.group(2)) for m in _SECRET_REFERENCE.finditer(program)]


_WORD = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*")
_SECRET_REFERENCE = re.compile(r"\$secrets\s*\.\s*([A-Za-z_][\w-]*)(?:\s*\.\s*([A-Za-z_]\w*))?")


def _role(program: str, start: int, end: int, brackets: list[str]) -> str:
    if program[start] == "$":
        return "variable"
    before = start - 1
    while before >= 0 and program[before].isspace():
        before -= 1
    previous = program[before] if before >= 0 else ""
    if previous == "." and (before == 0 or program[before - 1] != "."):
        return "field"
    after = end
    while after < len(program) and program[after].isspace():
        after += 1
    if (
        brackets
        and brackets[-1] == "{"
        and previous in ("{", ",")
        and program[after : after + 1] in (":", ",", "}")
    ):
        return "key"
    return "call"


def _jq_message(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else "jq error"
    text = text.replace("jq: error: ", "").replace("jq: ", "")
    return re.sub(r"\s*at <top-level>, line 1, column (\d+):?", r" (at column \1)", text).rstrip(":")


def _variable_hint(error: Exception, names: list[str]) -> str | None:
    if "is not defined" in str(error) and "$" in str(error):
        return "the arguments here are: " + ", ".join("$" + name for name in names)
    return None
