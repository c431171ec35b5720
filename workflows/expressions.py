"""jq expressions: `${ … }` templates, the one expression checker, and bounded evaluation.

A template is any JSON value; a string that is exactly `${ program }` evaluates to the program's
value, a string with `${ … }` inside other text is interpolated (each value rendered as text), every
other value is a literal. Programs run against a data document (`.`) with optional named variables
(`$input`, `$context`, …).

Every question about a program's names — which builtins it calls, which steps it reads, whether it
can loop — is answered by one scanner, `scan`, that reads the program the way jq's own lexer does
(jq 1.8): `.inputs` is a field and `{now: 1}` an object key, not the builtins of those names;
string literals are skipped but their `\\( … )` interpolations are code and are read; comments end at
an unescaped newline.

Forbidden builtins (`FORBIDDEN_BUILTINS`: the clock, the environment, stdin, stderr, files, module
search, halting) are refused twice: `check_program` / `expression_problems` report them (E202) at
compile time, and `evaluate` refuses them itself at run time — expressions also come from the API's
step debugger and from Serverless Workflow definitions, so the guard does not rely on the compiler
having run. The verdict is cached per program text. As a second line of defence the program is
evaluated inside definitions that shadow each forbidden builtin with an error (and bind `$ENV` to
null), so even a lexing difference could not reach the real builtin. `$__loc__` is allowed: it only
reports the line of the expression itself (`{"file": "<top-level>", "line": 1}`), which is
deterministic.

Expressions must never hang or blow up a worker: programs that cannot loop or grow (`is_bounded`)
are evaluated in-process, which costs microseconds; the others run in a guarded child process with a
time and memory limit (`expression_guard`). Results are capped in size either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import jq

from rte.errors import ExpressionError
from workflows import expression_guard
from workflows.jq_hints import jq_syntax_hint

MAX_RESULT_BYTES = 1_000_000
GUARDED_TIMEOUT_S = 1.0

# Builtins that read the clock, the environment, stdin, files or the module search path, write to
# stderr, or stop jq: their result would differ on replay, or they reach outside the expression.
FORBIDDEN_BUILTINS = frozenset(
    {
        "now", "localtime", "strflocaltime", "env", "$ENV", "input", "inputs", "input_filename",
        "input_line_number", "debug", "stderr", "halt", "halt_error", "get_search_list",
        "get_jq_origin", "get_prog_origin", "modulemeta", "import", "include", "$__prog_args",
    }
)  # fmt: skip

# Calls and keywords that can loop for ever, recurse, backtrack exponentially, take time quadratic in
# their input, or build values much larger than their input.
UNBOUNDED_CONSTRUCTS = frozenset(
    {
        "def", "recurse", "recurse_down", "repeat", "while", "until", "range", "limit", "skip",
        "foreach", "reduce", "combinations", "walk", "getpath", "setpath", "pick", "paths",
        "leaf_paths", "tostream", "fromstream", "truncate_stream", "transpose", "test", "match",
        "capture", "scan", "split", "splits", "sub", "gsub", "implode", "pow", "fromjson",
        "contains", "inside", "indices", "index", "rindex", "IN",
    }
)  # fmt: skip
# Operators that do the same: string repetition, recursive descent, and assignments (which pad
# arrays up to any index: `.[1e9] = 1`).
_UNBOUNDED_SYMBOLS = frozenset({"*", "..", "=", "|=", "+=", "-=", "*=", "/=", "%=", "//="})
# Calls and formats whose output may be several times the size of their input (escaping).
_GROWING_CALLS = frozenset({"tojson", "tostring", "explode", "format", "ascii"})
# A program may copy its input a few times (`,`, `+`, variables, interpolation, iteration) and still
# be evaluated in-process; copies multiply through pipes, so beyond this budget it runs guarded.
_MAX_COPIES = 6

_TEMPLATE = re.compile(r"\$\{")


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
    """The index of the `}` that closes a `${` whose program starts at `start`, or -1.

    Inside jq string literals braces do not count, but inside their `\\( … )` interpolations (which
    may hold strings of their own) they do.
    """
    depth = 1
    nesting: list[int] = []  # for each open interpolation, the parenthesis depth inside it
    in_string = False
    index = start
    while index < len(text):
        char = text[index]
        if in_string:
            if char == "\\" and text.startswith("(", index + 1):
                nesting.append(0)
                in_string = False
                index += 1
            elif char == "\\":
                index += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "(" and nesting:
            nesting[-1] += 1
        elif char == ")" and nesting:
            if nesting[-1] == 0:
                nesting.pop()
                in_string = True
            else:
                nesting[-1] -= 1
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


# The scanner ---------------------------------------------------------------------------------------

TokenKind = Literal[
    "call",  # an identifier or keyword in code: a builtin or function call, `if`, `def`, …
    "key",  # an identifier used as an object key: `{now: 1}`
    "shorthand",  # `{name}`, short for `{name: .name}`
    "variable",  # `$name`, `$__loc__`
    "field",  # `.name`
    "string",  # a string literal; `value` is its text when it has no interpolation
    "format",  # `@base64`
    "number",
    "symbol",  # operators, brackets, `\\(` (an interpolation opens; its `)` closes it)
]


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str
    start: int
    value: str | None = None  # a string literal's decoded text


@dataclass(frozen=True)
class Scan:
    tokens: tuple[Token, ...]
    # Brackets balanced, strings closed and no comments: wrapping the program in parentheses cannot
    # change how it parses, so it can be syntax-checked in a batch with others.
    self_contained: bool


_IDENT = r"(?:[A-Za-z_][A-Za-z0-9_]*::)*[A-Za-z_][A-Za-z0-9_]*"
_CODE = re.compile(
    rf"""(?P<space>[ \t\r\n]+)
    |(?P<comment>\#(?:[^\\\n]|\\(?:\r\n|[\s\S]|\Z))*)
    |(?P<field>\.[A-Za-z_][A-Za-z0-9_]*)
    |(?P<variable>\${_IDENT})
    |(?P<name>{_IDENT})
    |(?P<format>@[A-Za-z0-9_]+)
    |(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    |(?P<quote>")
    |(?P<symbol>\?//|//=|\.\.|[!=<>]=|//|[|+\-*/%]=|[\s\S])""",
    re.VERBOSE,
)
_IN_STRING = re.compile(r'(?P<end>")|(?P<interpolation>\\\()|(?P<text>(?:[^\\"]|\\[^(]|\\\Z)+)')
_CLOSING = {")": "(", "]": "[", "}": "{"}
# Tokens after which `[` indexes or iterates (`.a[]`) rather than building an array (`[]`).
_TERM_END_SYMBOLS = frozenset({")", "]", "}", "?", "."})


@lru_cache(maxsize=8192)
def scan(program: str) -> Scan:
    """The tokens of a jq program, as jq's lexer reads them, with identifiers given their role."""
    raw: list[tuple[str, str, int, str | None]] = []  # kind, text, start, innermost open bracket
    strings: dict[int, list[str] | None] = {}  # token index → text parts (None once interpolated)
    # Open brackets: "(", "[", "{", "if" (closed by `end`) or "\\(" with its string's token index.
    open_brackets: list[tuple[str, int]] = []
    in_string: int | None = None  # the token index of the string being read
    self_contained = True
    index = 0
    while index < len(program):
        if in_string is not None:
            match = _IN_STRING.match(program, index)
            assert match is not None
            index = match.end()
            if match.lastgroup == "end":
                in_string = None
            elif match.lastgroup == "interpolation":
                strings[in_string] = None
                open_brackets.append(("\\(", in_string))
                raw.append(("symbol", "\\(", match.start(), "\\("))
                in_string = None
            elif (parts := strings[in_string]) is not None:
                parts.append(match.group())
            continue
        match = _CODE.match(program, index)
        assert match is not None
        kind, text, start = match.lastgroup or "symbol", match.group(), match.start()
        index = match.end()
        top = open_brackets[-1][0] if open_brackets else None
        if kind == "space":
            continue
        if kind == "comment":
            self_contained = False
            continue
        if kind == "quote":
            in_string = len(raw)
            strings[in_string] = []
            raw.append(("string", text, start, top))
            continue
        entry_start = top == "{" and (not raw or raw[-1][1] in ("{", ","))
        raw.append((kind, text, start, top))
        if kind == "name" and text == "if" and not entry_start:
            open_brackets.append(("if", -1))  # `if … end` may hold commas that separate nothing
        elif kind == "name" and text == "end" and not entry_start:
            if top == "if":
                open_brackets.pop()
            else:
                self_contained = False
        elif kind == "symbol" and text in ("(", "[", "{"):
            open_brackets.append((text, -1))
        elif kind == "symbol" and text in _CLOSING:
            opened, string_index = open_brackets.pop() if open_brackets else ("", -1)
            if opened == "\\(" and text == ")":
                in_string = string_index
            elif opened != _CLOSING[text]:
                self_contained = False
    if in_string is not None or open_brackets:
        self_contained = False
    return Scan(_with_roles(raw, strings), self_contained)


def _with_roles(
    raw: list[tuple[str, str, int, str | None]], strings: dict[int, list[str] | None]
) -> tuple[Token, ...]:
    tokens: list[Token] = []
    for position, (kind, text, start, top) in enumerate(raw):
        value = None
        if kind == "string":
            parts = strings[position]
            value = _decode_string("".join(parts)) if parts is not None else None
            text = '"'
        elif kind == "name":
            previous = raw[position - 1][1] if position else ""
            following = raw[position + 1][1] if position + 1 < len(raw) else ""
            kind = "call"
            if top == "{" and previous in ("{", ","):
                if following == ":":
                    kind = "key"
                elif following in (",", "}"):
                    kind = "shorthand"
        tokens.append(Token(kind, text, start, value))  # type: ignore[arg-type]
    return tuple(tokens)


def _decode_string(body: str) -> str | None:
    try:
        return json.loads(f'"{body}"', strict=False)
    except ValueError:
        return None  # an escape jq reads but JSON does not: not a plain literal


def forbidden_names(program: str) -> list[str]:
    """The forbidden builtins a program uses, in order of first use."""
    return list(dict.fromkeys(_forbidden_tokens(program)))


def _forbidden_tokens(program: str) -> Iterator[str]:
    for token in scan(program).tokens:
        if token.kind in ("call", "variable") and token.text in FORBIDDEN_BUILTINS:
            yield token.text


# Checks ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpressionProblem:
    code: str  # E201 syntax, E202 forbidden builtin
    message: str
    hint: str | None = None


def check_program(program: str, variables: Iterable[str] = ()) -> list[ExpressionProblem]:
    """Problems a program has before it ever runs: forbidden builtins (E202), else invalid jq (E201)."""
    forbidden = forbidden_names(program)
    if forbidden:
        return [_forbidden_problem(name) for name in forbidden]
    names = tuple(sorted(variables))
    try:
        _compiled(program, names)  # exactly what `evaluate` compiles, so it is cached for it too
    except ValueError as error:
        message = _jq_message(error, len(_prefix(names)))
        return [ExpressionProblem("E201", f"invalid jq: {message}", jq_syntax_hint(program, message, names))]
    return []


# jq.compile costs ~1 ms, mostly loading jq's builtins; compiling programs in batches of this many
# (each as its own function) costs ~0.1 ms a program, which keeps a 1,000-step compile fast.
_SYNTAX_BATCH = 100
_BATCH_NAME = "__rte_check_"


def expression_problems(programs: list[str], variables: Iterable[str] = ()) -> list[list[ExpressionProblem]]:
    """`check_program` for many programs at once: the same answers, with the syntax checks batched."""
    names = tuple(sorted(variables))
    found: dict[str, list[ExpressionProblem]] = {}
    batch: list[str] = []
    for program in dict.fromkeys(programs):
        forbidden = forbidden_names(program)
        if forbidden:
            found[program] = [_forbidden_problem(name) for name in forbidden]
        elif scan(program).self_contained and _BATCH_NAME not in program:
            batch.append(program)
        else:
            found[program] = check_program(program, names)
    for start in range(0, len(batch), _SYNTAX_BATCH):
        chunk = batch[start : start + _SYNTAX_BATCH]
        try:
            jq.compile(_batched(chunk, names))
            found.update((program, []) for program in chunk)
        except ValueError:  # one of them is wrong: find which, one by one
            found.update((program, check_program(program, names)) for program in chunk)
    return [found[program] for program in programs]


def _batched(programs: list[str], variables: tuple[str, ...]) -> str:
    # Each program is the body of its own function, called once so that jq binds every name in it.
    bindings = "".join(f"null as ${name} | " for name in variables)
    functions = "".join(f"def {_BATCH_NAME}{n}: (\n{program}\n); " for n, program in enumerate(programs))
    calls = ", ".join(f"{_BATCH_NAME}{n}" for n in range(len(programs)))
    return f"{bindings}{functions}[{calls}]"


def _forbidden_problem(name: str) -> ExpressionProblem:
    return ExpressionProblem(
        "E202",
        f"'{name}' is not allowed in expressions: it is not deterministic or reaches outside the workflow",
        "pass the value in as an input parameter, or compute it in a `python` or `script` step",
    )


def referenced_steps(program: str) -> set[str] | None:
    """Step ids a native expression reads through `.steps`; None when it reads `.steps` whole.

    Read as jq reads it: `.steps.a-b` is `.steps.a` minus `b`; `.steps["a-b"]` and `.steps."a-b"`
    name `a-b`; text inside string literals is not code, but `\\( … )` interpolations are. A
    `.steps` that continues another path (`.inputs.steps.x`, `$v.steps`) is not the steps of the
    run; `{steps}` (short for `{steps: .steps}`) reads them whole.
    """
    tokens = scan(program).tokens
    found: set[str] = set()
    for position, token in enumerate(tokens):
        if token.kind == "shorthand" and token.text == "steps":
            return None
        if token.kind == "string" and token.value == "steps" and _is_string_shorthand(tokens, position):
            return None
        after = _steps_access(tokens, position)
        if after is None:
            continue
        step_id = _step_name(tokens, after)
        if step_id is None:
            return None
        found.add(step_id)
    return found


def _steps_access(tokens: tuple[Token, ...], position: int) -> int | None:
    """When a path starting at `position` reads the run's `.steps`, the index of the token after it."""
    token = tokens[position]
    if token.text not in (".steps", ".") or (position and _ends_term(tokens, position - 1)):
        return None  # not a path start, or a suffix of another path
    if token.kind == "field":
        after = position + 1
    elif token.kind == "symbol" and token.text == ".":
        following = tokens[position + 1 : position + 4]
        if _is_literal(following, 0, "steps"):
            after = position + 2  # ."steps"
        elif len(following) == 3 and following[0].text == "[" and _is_literal(following, 1, "steps"):
            if following[2].text != "]":
                return None
            after = position + 4  # .["steps"]
        else:
            return None
    else:
        return None
    while after < len(tokens) and tokens[after].kind == "symbol" and tokens[after].text == "?":
        after += 1
    return after


def _step_name(tokens: tuple[Token, ...], after: int) -> str | None:
    """The step id a `.steps` access names next (`.a`, `."a-b"`, `["a-b"]`, `.["a-b"]`), else None."""
    following = tokens[after : after + 4]
    if not following:
        return None
    if following[0].kind == "field":
        return following[0].text[1:]
    start = 1 if following[0].kind == "symbol" and following[0].text == "." else 0
    if start and len(following) > 1 and following[1].kind == "string":
        return following[1].value
    inside = following[start : start + 3]
    if len(inside) == 3 and inside[0].text == "[" and inside[1].kind == "string" and inside[2].text == "]":
        return inside[1].value
    return None


def _is_literal(tokens: tuple[Token, ...] | list[Token], index: int, value: str) -> bool:
    return len(tokens) > index and tokens[index].kind == "string" and tokens[index].value == value


def _is_string_shorthand(tokens: tuple[Token, ...], position: int) -> bool:
    previous = tokens[position - 1].text if position else ""
    following = tokens[position + 1].text if position + 1 < len(tokens) else ""
    return previous in ("{", ",") and following in (",", "}")


def _ends_term(tokens: tuple[Token, ...], index: int) -> bool:
    """Whether the token at `index` can end a term, so that a `.`/`[` right after it continues it."""
    token = tokens[index]
    if token.kind == "symbol":
        return token.text in _TERM_END_SYMBOLS
    if token.kind == "call":
        return token.text not in _JQ_KEYWORDS
    return token.kind in ("field", "variable", "string", "number", "format")


_JQ_KEYWORDS = frozenset(
    {
        "as", "import", "include", "module", "def", "if", "then", "else", "elif", "and", "or", "end",
        "reduce", "foreach", "try", "catch", "label", "break", "__loc__",
    }
)  # fmt: skip


@lru_cache(maxsize=8192)
def is_bounded(program: str) -> bool:
    """True when the program cannot loop, recurse or grow far beyond the size of its input.

    Conservative: no loops, recursion, regexes, path building or repetition, and few copies of the
    input (`,`, `+`, variables, interpolations, at most one `[]` iteration, escaping) — copies multiply
    through pipes and cartesian products, so a program with more of them is evaluated guarded.
    """
    tokens = scan(program).tokens
    copies = 0
    iterations = 0
    for position, token in enumerate(tokens):
        if token.kind == "call" and token.text in UNBOUNDED_CONSTRUCTS:
            return False
        if token.kind == "symbol" and token.text in _UNBOUNDED_SYMBOLS:
            return False
        if token.kind == "format" or (token.kind == "call" and token.text in _GROWING_CALLS):
            copies += 3
        elif token.kind == "symbol" and token.text == "[" and _iterates(tokens, position):
            copies += 3
            iterations += 1
        elif (token.kind == "variable" and token.text != "$__loc__") or (
            token.kind == "symbol" and token.text in (",", "+", "\\(")
        ):
            copies += 1
    return copies <= _MAX_COPIES and iterations <= 1


def _iterates(tokens: tuple[Token, ...], position: int) -> bool:
    """`[` `]` right after a term: `.items[]`."""
    following = tokens[position + 1] if position + 1 < len(tokens) else None
    return bool(position and following and following.text == "]" and _ends_term(tokens, position - 1))


# Evaluation --------------------------------------------------------------------------------------

# Defence in depth: every forbidden builtin, shadowed by one that fails (`$ENV` bound to null). The
# prelude sits on the first line, before the program, so `$__loc__` still reports the right line.
_SHADOWED = (
    "now", "localtime", "strflocaltime(f)", "env", "input", "inputs", "input_filename",
    "input_line_number", "debug", "debug(m)", "stderr", "halt", "halt_error", "halt_error(m)",
    "get_search_list", "get_jq_origin", "get_prog_origin", "modulemeta",
)  # fmt: skip
_PRELUDE = (
    "".join(
        f'def {signature}: error("{signature.split("(")[0]} is not allowed in expressions"); '
        for signature in _SHADOWED
    )
    + "null as $ENV | "
)


def _prefix(variables: tuple[str, ...]) -> str:
    """What jq compiles before the program, on its first line: the prelude, then the named variables
    bound from the input, so that one compiled program serves every call. `X | program` parses the
    program exactly as it parses alone (`|` binds loosest), and directives (`import`, `module`)
    become syntax errors."""
    if not variables:
        return _PRELUDE
    bindings = ", ".join(f"${name}" for name in variables)
    return f"{_PRELUDE}. as [$__vars, $__data] | $__vars as {{{bindings}}} | $__data | "


@lru_cache(maxsize=4096)
def _compiled(program: str, variables: tuple[str, ...]) -> Any:
    return jq.compile(_prefix(variables) + program)


@lru_cache(maxsize=4096)
def _refusal(program: str) -> str | None:
    """Why `evaluate` refuses a program before running it, or None. Cached: paid once per text."""
    forbidden = forbidden_names(program)
    if forbidden:
        return _forbidden_problem(forbidden[0]).message
    return None


def evaluate(program: str, data: Any, variables: Mapping[str, Any] | None = None) -> Any:
    """The first value the program yields (None when it yields nothing).

    Refuses programs that use a forbidden builtin; runs bounded programs in-process and the others
    in the guarded child (time and memory limits); refuses results over `MAX_RESULT_BYTES`.
    """
    refusal = _refusal(program)
    if refusal is not None:
        raise ExpressionError(f"{refusal} in ${{ {program} }}", expression=program)
    names = tuple(sorted(variables or {}))
    document = [dict(variables or {}), data] if names else data
    try:
        compiled = _compiled(program, names)  # also reports syntax errors without the child
        if is_bounded(program):
            text = compiled.input_value(document).text()
        else:
            text = expression_guard.evaluate(_prefix(names) + program, document, GUARDED_TIMEOUT_S)
    except ValueError as error:
        message = _jq_message(error, len(_prefix(names)))
        raise ExpressionError(f"{message} in ${{ {program} }}", expression=program) from None
    except expression_guard.GuardError as error:
        raise ExpressionError(f"{error} in ${{ {program} }}", expression=program) from None
    if len(text) > MAX_RESULT_BYTES:
        raise ExpressionError(
            f"result is {len(text):,} bytes, over the {MAX_RESULT_BYTES:,}-byte limit in ${{ {program} }}",
            expression=program,
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


_JQ_POSITION = re.compile(r"\s*at <top-level>, line (\d+), column (\d+):?")


def _jq_message(error: Exception, offset: int = 0) -> str:
    """jq's message, first line only, its position made relative to the program as written: jq
    compiled `offset` characters of prelude before the program, on its first line."""
    text = str(error).strip()
    message = text.splitlines()[0] if text else "jq error"
    message = re.sub(r"\s*\(Unix shell quoting issues\?\)", "", message)
    message = message.replace("jq: error: ", "").replace("jq: ", "")
    match = _JQ_POSITION.search(message)
    if match is None:
        return message
    line, column = int(match.group(1)), int(match.group(2))
    where = f"at column {max(column - offset, 1)}" if line == 1 else f"at line {line}, column {column}"
    return f"{message[: match.start()]} ({where}){message[match.end() :]}".rstrip(":").rstrip()
