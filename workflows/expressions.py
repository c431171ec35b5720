"""jq expressions: `${ … }` templates, compile-time checks, and bounded evaluation.

A template is any JSON value; a string that is exactly `${ program }` evaluates to the program's
value, a string with `${ … }` inside other text is interpolated (each value rendered as text), every
other value is a literal. Programs run against a data document (`.`) with optional named variables
(`$input`, `$context`, …).

Expressions must never hang or blow up a worker: programs that cannot loop or grow (no recursion,
no generators, no regexes, no repetition) are evaluated in-process, which costs microseconds; the
others run in a guarded child process with a time and memory limit (`expression_guard`). Results are
capped in size either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jq

from rte.errors import ExpressionError
from workflows import expression_guard

MAX_RESULT_BYTES = 1_000_000
GUARDED_TIMEOUT_S = 1.0

# Builtins that read the clock, the environment, files or stdin, or write to stderr: their result
# would differ on replay, or they reach outside the expression.
FORBIDDEN_BUILTINS = frozenset(
    {
        "now", "env", "$ENV", "input", "inputs", "debug", "stderr", "input_filename",
        "input_line_number", "halt", "halt_error", "get_search_list", "get_jq_origin",
        "get_prog_origin", "localtime", "strflocaltime", "import", "include", "$__prog_args",
    }
)  # fmt: skip

# Constructs that can loop for ever, recurse, backtrack exponentially or build huge values.
UNBOUNDED_CONSTRUCTS = frozenset(
    {
        "def", "recurse", "recurse_down", "repeat", "while", "until", "range", "limit",
        "foreach", "reduce", "combinations", "walk", "getpath", "paths", "tostream", "fromstream",
        "test", "match", "capture", "scan", "split", "splits", "sub", "gsub", "implode", "pow",
        "*", "fromjson",
    }
)  # fmt: skip

_TEMPLATE = re.compile(r"\$\{")
_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # string literals (skipped)
    r"|#[^\n]*"  # comments (skipped)
    r"|\$?[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*"  # identifiers and $variables
    r"|@[A-Za-z0-9_]+"  # formats
    r"|\.\."  # recursive descent
    r"|\S"
)


@dataclass(frozen=True)
class TemplatePart:
    text: str
    is_expression: bool


def split_template(value: str) -> list[TemplatePart] | None:
    """Split a string into literal text and `${ program }` parts; None when it holds no template.

    Braces inside the program (object construction, string interpolation) are matched, and braces in
    jq string literals are ignored, so `${ {a: "}"} }` is one expression.
    """
    if "${" not in value:
        return None
    parts: list[TemplatePart] = []
    position = 0
    while True:
        match = _TEMPLATE.search(value, position)
        if not match:
            break
        if match.start() > position:
            parts.append(TemplatePart(value[position : match.start()], False))
        end = _matching_brace(value, match.end())
        if end < 0:
            raise ExpressionError("unterminated ${ … }: a closing '}' is missing", expression=value)
        program = value[match.end() : end].strip()
        if not program:
            raise ExpressionError("empty expression ${ }", expression=value)
        parts.append(TemplatePart(program, True))
        position = end + 1
    if position < len(value):
        parts.append(TemplatePart(value[position:], False))
    return parts


def _matching_brace(text: str, start: int) -> int:
    depth = 1
    index = start
    in_string = False
    while index < len(text):
        char = text[index]
        if in_string:
            if char == "\\":
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return -1


def iter_programs(
    template: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every jq program inside a template, with the path of the value that holds it."""
    if isinstance(template, str):
        for part in split_template(template) or ():
            if part.is_expression:
                yield path, part.text
    elif isinstance(template, Mapping):
        for key, value in template.items():
            yield from iter_programs(value, (*path, key))
    elif isinstance(template, list | tuple):
        for index, value in enumerate(template):
            yield from iter_programs(value, (*path, index))


def strip_expression(value: str) -> str:
    """The program of a value that may or may not be wrapped in `${ }` (e.g. `if`, `items`)."""
    parts = split_template(value)
    if parts and len(parts) == 1 and parts[0].is_expression:
        return parts[0].text
    if parts:
        raise ExpressionError("expected a single ${ … } expression, found text around it", expression=value)
    return value.strip()


def tokens(program: str) -> list[str]:
    return [
        token for token in _TOKEN.findall(program) if not token.startswith('"') and not token.startswith("#")
    ]


@dataclass(frozen=True)
class ExpressionProblem:
    code: str  # E201 syntax, E202 forbidden builtin
    message: str
    hint: str | None = None


def check_program(program: str, variables: tuple[str, ...] = ()) -> list[ExpressionProblem]:
    """Problems a program has before it ever runs: syntax and forbidden builtins."""
    problems: list[ExpressionProblem] = []
    for token in tokens(program):
        if token in FORBIDDEN_BUILTINS:
            problems.append(
                ExpressionProblem(
                    "E202",
                    f"'{token}' is not allowed in expressions: it is not deterministic or reaches outside the workflow",
                    "pass the value in as an input parameter, or compute it in a `python` or `script` step",
                )
            )
    if problems:
        return problems
    try:
        _compiled(program, tuple(sorted(variables)))
    except ValueError as error:
        problems.append(ExpressionProblem("E201", f"invalid jq: {_jq_message(error)}", None))
    return problems


def referenced_steps(program: str) -> set[str] | None:
    """Step ids a native expression reads through `.steps.<id>`; None when it reads `.steps` whole."""
    found: set[str] = set()
    for match in re.finditer(r"\.steps\s*(?:\.\s*([A-Za-z_][\w-]*)|\[\s*\"([^\"]+)\"\s*\]|(\S)?)", program):
        step_id = match.group(1) or match.group(2)
        if step_id:
            found.add(step_id)
        else:
            return None
    return found


def is_bounded(program: str) -> bool:
    """True when the program cannot loop, recurse or grow beyond the size of its input."""
    return not any(token in UNBOUNDED_CONSTRUCTS for token in tokens(program))


@lru_cache(maxsize=4096)
def _compiled(program: str, variables: tuple[str, ...]) -> Any:
    return jq.compile(_wrap(program, variables))


def _wrap(program: str, variables: tuple[str, ...]) -> str:
    """Bind named variables from the input itself, so one compiled program serves every call."""
    if not variables:
        return program
    bindings = ", ".join(f"${name}" for name in variables)
    return f". as [$__vars, $__data] | $__vars as {{{bindings}}} | $__data | ({program})"


def evaluate(program: str, data: Any, variables: Mapping[str, Any] | None = None) -> Any:
    """The first value the program yields (None when it yields nothing)."""
    names = tuple(sorted(variables or {}))
    document = [dict(variables or {}), data] if names else data
    try:
        if is_bounded(program):
            text = _compiled(program, names).input_value(document).text()
        else:
            text = expression_guard.evaluate(_wrap(program, names), document, GUARDED_TIMEOUT_S)
    except ValueError as error:
        raise ExpressionError(f"{_jq_message(error)} in ${{ {program} }}", expression=program) from None
    except expression_guard.GuardError as error:
        raise ExpressionError(f"{error} in ${{ {program} }}", expression=program) from None
    if len(text) > MAX_RESULT_BYTES:
        raise ExpressionError(
            f"result is {len(text):,} bytes, over the {MAX_RESULT_BYTES:,}-byte limit", expression=program
        )
    first = text.split("\n", 1)[0] if text else ""
    return json.loads(first) if first else None


def evaluate_template(template: Any, data: Any, variables: Mapping[str, Any] | None = None) -> Any:
    """Resolve every `${ }` inside a template; literals come back unchanged."""
    if isinstance(template, str):
        parts = split_template(template)
        if parts is None:
            return template
        if len(parts) == 1 and parts[0].is_expression:
            return evaluate(parts[0].text, data, variables)
        return "".join(
            _as_text(evaluate(part.text, data, variables)) if part.is_expression else part.text
            for part in parts
        )
    if isinstance(template, Mapping):
        return {key: evaluate_template(value, data, variables) for key, value in template.items()}
    if isinstance(template, list | tuple):
        return [evaluate_template(value, data, variables) for value in template]
    return template


def truthy(value: Any) -> bool:
    """jq truthiness: everything but false and null is true."""
    return value is not None and value is not False


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _jq_message(error: Exception) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else "jq error"
    message = re.sub(r"\s*\(Unix shell quoting issues\?\)", "", message)
    return message.replace("jq: error: ", "").replace("jq: ", "")
