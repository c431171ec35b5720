"""E001: a YAML or JSON syntax error, said where the mistake most likely is, with a hint.

Parsers notice a bracket or quote that is never closed only where they give up, which can be lines
later (a `[ ]` list may span lines) or at the end of the file. So when the parser was inside a flow
list, a flow mapping or a quoted string, the diagnostic points at the `[`, `{` or quote that opened
it, and the message says where the parser stopped and what it found there.
"""

from __future__ import annotations

import json

from yaml.error import Mark, MarkedYAMLError, YAMLError

from workflows.diagnostics import Diagnostic, make_diagnostic

# What closes each opener, and what an author reads the opener as.
_CLOSERS = {"[": "]", "{": "}", '"': '"', "'": "'"}
_NAMES = {"[": "list", "{": "mapping", '"': "string", "'": "string"}
_UNCLOSED_HINTS = {
    "[": "add the missing ']': a [ ] list may span lines, so YAML notices only where it gives up; "
    "or write the list as one '- item' per line",
    "{": "add the missing '}': a { } mapping may span lines, so YAML notices only where it gives up; "
    "or write it as one 'key: value' per line",
    '"': 'end the text with a closing " (write \\" for a quote inside it), or use a block scalar '
    "(`key: |` and the text indented below) for text over several lines",
    "'": "end the text with a closing ' (write '' for a quote inside it), or use a block scalar "
    "(`key: |` and the text indented below) for text over several lines",
}
_FLOW_CONTEXTS = ("while parsing a flow sequence", "while parsing a flow mapping")
_GENERIC_HINT = (
    "YAML often notices a mistake after it: look at this line and the one before it "
    "(indentation, an unclosed quote or bracket, a ': ' inside an unquoted value)"
)


def yaml_syntax_error(error: YAMLError, text: str) -> Diagnostic:
    if isinstance(error, MarkedYAMLError):
        unclosed = _unclosed_yaml(error, text)
        if unclosed is not None:
            return unclosed
    mark = None
    message = str(error).strip().splitlines()[0] if str(error).strip() else "syntax error"
    if isinstance(error, MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        message = error.problem or error.context or message
        if error.context and error.problem:
            message = f"{error.problem} ({error.context})"
    position = (mark.line + 1, mark.column + 1) if mark is not None else None
    found = _character_at(text, mark) if mark is not None else ""
    return make_diagnostic("E001", f"invalid YAML: {message}", (), position, _yaml_hint(message, found))


def _unclosed_yaml(error: MarkedYAMLError, text: str) -> Diagnostic | None:
    """A flow list/mapping or quoted string the parser was still inside when it gave up."""
    opened, stopped, problem = error.context_mark, error.problem_mark, error.problem or ""
    if opened is None or stopped is None:
        return None
    opener = _character_at(text, opened)
    start, end = (opened.line + 1, opened.column + 1), (stopped.line + 1, stopped.column + 1)
    if error.context in _FLOW_CONTEXTS and opener in "[{" and problem.startswith("did not find expected ','"):
        return _in_collection(opener, start, end, _character_at(text, stopped), "YAML")
    if error.context == "while scanning a quoted scalar" and opener in ("'", '"'):
        if problem.startswith("found unexpected end of stream"):
            return _unclosed(opener, start, "the text ended inside it", "YAML")
        if problem.startswith("found unexpected document"):
            return _unclosed(opener, start, f"a document marker at {end[0]}:{end[1]} ended it", "YAML")
    return None


def json_syntax_error(error: json.JSONDecodeError, text: str) -> Diagnostic:
    if error.msg.startswith("Unterminated string"):
        return make_diagnostic(
            "E001",
            f"invalid JSON: the string at {error.lineno}:{error.colno} is never closed",
            (),
            (error.lineno, error.colno),
            'end it with a closing " (write \\" for a quote inside it, \\n for a line break)',
        )
    opener = _innermost_open_json(text, error.pos)
    at_end = not text[error.pos :].strip()
    if opener is not None and (at_end or error.msg == "Expecting ',' delimiter"):
        char, opened = opener
        found = "" if at_end else text[error.pos : error.pos + 1]
        return _in_collection(char, opened, (error.lineno, error.colno), found, "JSON")
    return make_diagnostic(
        "E001",
        f"invalid JSON: {error.msg}",
        (),
        (error.lineno, error.colno),
        _json_hint(error.msg),
    )


def _in_collection(
    opener: str, opened: tuple[int, int], stopped: tuple[int, int], found: str, syntax: str
) -> Diagnostic:
    """The parser wanted ',' or the closer of `opener` at `stopped` and found something else: an
    unclosed bracket when the text ended, a wrong closer came or a later line began; else most
    likely a missing comma, said where it is."""
    closer = _CLOSERS[opener]
    seen = f"found '{found}'" if found.strip() else "found the end of a line" if found else "the text ended"
    wrong_closer = found in ("]", "}") and found != closer
    if not found.strip() or wrong_closer or stopped[0] > opened[0]:
        detail = f"at {stopped[0]}:{stopped[1]} {syntax} expected ',' or '{closer}' but {seen}"
        return _unclosed(opener, opened, detail, syntax)
    return make_diagnostic(
        "E001",
        f"invalid {syntax}: expected ',' or '{closer}' here but {seen}: a ',' is missing before it, or "
        f"the {_NAMES[opener]} opened with {opener} at {opened[0]}:{opened[1]} is never closed",
        (),
        stopped,
        f"separate the {_NAMES[opener]}'s items with ',' and close it with '{closer}'",
    )


def _unclosed(opener: str, opened: tuple[int, int], detail: str, syntax: str) -> Diagnostic:
    hint = _UNCLOSED_HINTS[opener]
    if syntax == "JSON":
        hint = f"add the missing '{_CLOSERS[opener]}' (or remove a stray one before it)"
    return make_diagnostic(
        "E001",
        f"invalid {syntax}: the {_NAMES[opener]} opened with {opener} at {opened[0]}:{opened[1]} is never "
        f"closed ({detail})",
        (),
        opened,
        hint,
    )


def _innermost_open_json(text: str, end: int) -> tuple[str, tuple[int, int]] | None:
    """The innermost `[` or `{` still open at offset `end` of JSON text, and its (line, column)."""
    stack: list[int] = []
    in_string = escaped = False
    for offset in range(min(end, len(text))):
        char = text[offset]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append(offset)
        elif char in "]}" and stack:
            stack.pop()
    if not stack:
        return None
    offset = stack[-1]
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return text[offset], (line, column)


def _character_at(text: str, mark: Mark) -> str:
    start = 0
    for _ in range(mark.line):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    return text[start + mark.column : start + mark.column + 1]


def _yaml_hint(message: str, found: str) -> str:
    if found == "\t" or "tab" in message.lower():
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in message:
        return "quote values that contain ': ', e.g. message: \"note: done\""
    if found in ("@", "`"):
        return "quote values that start with @ or `"
    if "unknown escape character" in message:
        return (
            "inside double quotes a backslash starts an escape: write \\\\ for a backslash (jq's "
            "\\( ) becomes \\\\( ), or quote the value with ' ' where a backslash is plain text"
        )
    if "undefined alias" in message:
        return "define the anchor (&name) before using its alias (*name), or quote a value that starts with *"
    if "single document" in message:
        return "a definition file holds one workflow: remove the '---' line, or move the rest to another file"
    return _GENERIC_HINT


def _json_hint(message: str) -> str:
    if message.startswith("Expecting property name"):
        return "JSON allows no comma after the last member, and keys need double quotes"
    if message.startswith("Expecting value"):
        return "JSON allows no comma after the last item, and text needs double quotes"
    return "check the line before too; a file named .yaml may use YAML's more forgiving syntax"
