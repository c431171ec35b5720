"""E201: what to do about a jq program that does not compile.

jq's own messages name parser tokens (`unexpected INVALID_CHARACTER`, `QQSTRING_START`); the hint
says in words what usually causes them in a workflow definition — mostly habits from other
languages (`&&`, `'text'`, `x as y`), a bracket left open, or a step id with a dash.
"""

from __future__ import annotations

import re

_UNDEFINED = re.compile(r"(\$?[A-Za-z_][A-Za-z0-9_]*)/?(\d+)? is not defined")
_COLUMN = re.compile(r"\(at column (\d+)\)")
_DASHED_READ = re.compile(r"((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\.([A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)+)")
MANUAL = "https://jqlang.org/manual/"


def jq_syntax_hint(program: str, message: str, variables: tuple[str, ...] = ()) -> str:
    """A hint for jq's compile error `message` about `program` (never empty)."""
    undefined = _UNDEFINED.search(message)
    if undefined:
        return _undefined_hint(program, undefined.group(1), variables)
    found = _character(program, message)
    if "INVALID_CHARACTER" in message:
        if found in ("&", "|") and ("&&" in program or "||" in program):
            return "jq writes `and`, `or` and `not` (e.g. `.a and (.b | not)`), not &&, || and !"
        if found == "'":
            return "jq strings use double quotes: in YAML write the value as '${ .status == \"done\" }'"
        if found == "!":
            return "jq negates with `not` (`.a | not`) and compares with `!=`"
    if found in (")", "]", "}") or re.search(r"unexpected '[)\]}]'", message):
        return f"a bracket closes here that was never opened, or a value is missing before it; see {MANUAL}"
    if "unexpected end of file" in message:
        return (
            'the program ends too early: close every (, [, { and " it opens, and finish the last '
            "operator (`.a +` needs a right-hand side)"
        )
    if "QQSTRING" in message:
        return 'a string is not closed: end it with ", and close any \\( … ) interpolation inside it with )'
    if "expecting BINDING" in message:
        return "jq variables start with $: `.items as $items | …`"
    if "unexpected ';'" in message:
        return (
            "jq separates pipeline stages with |, several outputs with ',' and only function arguments with ;"
        )
    return (
        f"check the program against the jq manual ({MANUAL}), or try it with the `jq` command on sample data"
    )


def _undefined_hint(program: str, name: str, variables: tuple[str, ...]) -> str:
    if name.startswith("$"):
        known = ", ".join(f"${variable}" for variable in variables)
        where = f"the variables here are {known}" if known else "no variables are defined here"
        return f"{where}; read values from the document instead (`.inputs.x`, `.steps.<id>.output`), or bind one with `… as {name} |`"
    for match in _DASHED_READ.finditer(program):
        parent, dashed = match.group(1) or "", match.group(2)
        if dashed.endswith(f"-{name}"):
            first, rest = dashed.split("-", 1)
            return f'jq reads `{parent}.{dashed}` as `{parent}.{first} - {rest}`: write {parent or "."}["{dashed}"]'
    return (
        f"'{name}' is not a jq builtin: to read a field write `.{name}`; the builtins are listed at {MANUAL}"
    )


def _character(program: str, message: str) -> str:
    """The character jq's message points at (its column counts from 1)."""
    match = _COLUMN.search(message)
    if match is None:
        return ""
    column = int(match.group(1))
    return program[column - 1 : column] if 0 < column <= len(program) else ""
