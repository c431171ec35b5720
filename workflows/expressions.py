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

Expressions must never hang or blow up a worker. This module only evaluates in-process
(`evaluate_program`, `evaluate_template_in`) and says what may run where: a template *fits in the
thread* (`fits_in_thread`) when every program is provably cheap (`is_cheap`: a linear-time subset)
and its document is small and holds no claim-check reference. Where each evaluation actually runs is
decided in one place, `workflows/expression_boundary.py`; everything that does not fit runs in the
guarded evaluator (`activities/expression.py`: a child process with time and memory limits).
Results are capped in size either way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import jq
from pydantic import BaseModel, Field

from rte.claim_check import REF_KEY
from rte.errors import ExpressionError
from workflows.jq_hints import jq_syntax_hint

MAX_RESULT_BYTES = 1_000_000
# The workflow thread evaluates a cheap program (`is_cheap`) only on a document (its data and
# variables, as JSON) up to this size; anything larger is evaluated outside it.
IN_THREAD_MAX_INPUT_BYTES = 32 * 1024

# Builtins that read the clock, the environment, stdin, files or the module search path, write to
# stderr, or stop jq: their result would differ on replay, or they reach outside the expression.
FORBIDDEN_BUILTINS = frozenset(
    {
        "now", "localtime", "strflocaltime", "env", "$ENV", "input", "inputs", "input_filename",
        "input_line_number", "debug", "stderr", "halt", "halt_error", "get_search_list",
        "get_jq_origin", "get_prog_origin", "modulemeta", "import", "include", "$__prog_args",
    }
)  # fmt: skip

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


# Builtins and keywords whose cost is linear (or n·log n) in the size of their input and whose output
# is at most a small multiple of it. Everything else — loops, recursion, regexes, paths, assignment,
# string search, ranges — is not provably cheap and is evaluated outside the workflow thread.
CHEAP_CALLS = frozenset(
    {
        # keywords and literals
        "if", "then", "elif", "else", "end", "and", "or", "as", "try", "catch", "true", "false",
        "null", "not", "__loc__",
        # type tests and selection
        "type", "length", "utf8bytelength", "select", "empty", "error", "values", "nulls",
        "booleans", "numbers", "strings", "arrays", "objects", "iterables", "scalars",
        "isnan", "isinfinite", "isnormal", "infinite", "nan", "isvalid", "isempty",
        # objects and arrays
        "keys", "keys_unsorted", "has", "in", "to_entries", "from_entries", "add", "any", "all",
        "first", "last", "reverse", "sort", "unique", "min", "max", "flatten", "tojson",
        "toarray", "join",
        # strings and numbers
        "tostring", "tonumber", "ascii_downcase", "ascii_upcase", "ltrimstr", "rtrimstr",
        "startswith", "endswith", "trim", "ltrim", "rtrim", "explode",
        "floor", "ceil", "round", "fabs", "sqrt", "abs", "log", "log2", "log10", "exp", "exp2",
        "exp10", "significand", "trunc",
        # dates (pure: they never read the clock)
        "todate", "fromdate", "todateiso8601", "fromdateiso8601", "dateadd", "datesub", "date",
        "mktime", "gmtime", "strftime", "strptime",
    }
)  # fmt: skip
# Calls that apply their argument to every element: one of them (or one `[]`) per program is linear;
# two can multiply (a cartesian product), so such a program runs outside the workflow thread.
_ITERATING_CALLS = frozenset(
    {"map", "map_values", "with_entries", "sort_by", "group_by", "unique_by", "min_by", "max_by"}
)
# Calls and formats whose output may be several times the size of their input (escaping).
_GROWING_CALLS = frozenset({"tojson", "tostring", "explode"})
_CHEAP_SYMBOLS = frozenset(
    {"*", ".", "[", "]", "{", "}", "(", ")", ",", "|", ":", "?", "==", "!=", "<", "<=", ">", ">=", "//",
     "?//", "+", "/", "%", "\\(", "-"}
)  # fmt: skip
# A program may copy its input a few times (`,`, `+`, variables, interpolation, iteration) and still
# be evaluated in the workflow thread; copies multiply through pipes, so beyond this it runs outside.
_MAX_COPIES = 6
# `x * n` with a number literal n up to this is cheap: at worst a string repeated n times.
_MAX_REPEAT = 4


@lru_cache(maxsize=8192)
def is_cheap(program: str) -> bool:
    """True when the program provably runs in time linear in its input and yields at most a small
    multiple of it: only cheap builtins (`CHEAP_CALLS`), at most one iteration, a few copies, and no
    array subtraction (`-` between two non-numbers is quadratic in jq) or repetition (`*`).

    Only such programs, on inputs under a size cap, are evaluated in the workflow thread.
    """
    tokens = scan(program).tokens
    copies = 0
    iterations = 0
    for position, token in enumerate(tokens):
        if token.kind == "call":
            if token.text in _ITERATING_CALLS:
                iterations += 1
                copies += 3
                continue
            if token.text not in CHEAP_CALLS:
                return False
            if token.text in _GROWING_CALLS:
                copies += 3
        elif token.kind == "format":
            copies += 3
        elif token.kind == "symbol":
            if token.text not in _CHEAP_SYMBOLS:
                return False
            if token.text == "-" and not _next_to_number(tokens, position):
                return False
            if token.text == "*":
                factor = _number_beside(tokens, position)
                if factor is None or not 0 <= factor <= _MAX_REPEAT:
                    return False  # `"x" * n` repeats a string n times
                copies += int(factor)
            if token.text == "[" and _iterates(tokens, position):
                copies += 3
                iterations += 1
            elif token.text in (",", "+", "\\("):
                copies += 1
        elif token.kind == "variable" and token.text != "$__loc__":
            copies += 1
    return copies <= _MAX_COPIES and iterations <= 1


def _iterates(tokens: tuple[Token, ...], position: int) -> bool:
    """`[` `]` right after a term: `.items[]`."""
    following = tokens[position + 1] if position + 1 < len(tokens) else None
    return bool(position and following and following.text == "]" and _ends_term(tokens, position - 1))


def _number_beside(tokens: tuple[Token, ...], position: int) -> float | None:
    """The number literal on either side of a binary operator, if there is one."""
    for neighbour in (position - 1, position + 1):
        if 0 <= neighbour < len(tokens) and tokens[neighbour].kind == "number":
            return float(tokens[neighbour].text)
    return None


def _next_to_number(tokens: tuple[Token, ...], position: int) -> bool:
    """`x - 1`, `1 - x`, `-1`: subtraction with a number literal cannot be array subtraction."""
    before = tokens[position - 1] if position else None
    after = tokens[position + 1] if position + 1 < len(tokens) else None
    return bool(
        (after is not None and after.kind == "number")
        or (before is not None and before.kind == "number")
        or before is None
        or (before.kind == "symbol" and before.text in ("(", "[", ",", "|", ":"))
    )


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
    """Why a program is refused before it runs, or None. Cached: paid once per text."""
    forbidden = forbidden_names(program)
    if forbidden:
        return _forbidden_problem(forbidden[0]).message
    return None


# What a claim-checked value looks like inside a document (`rte/claim_check.py`): a document that
# holds one must be resolved from the store first, which only happens outside the workflow thread.
REFERENCE_MARKER = json.dumps(REF_KEY)


# Plain paths (`.item`, `.inputs.order.id`) are most of a workflow's expressions: they are read by
# walking the data itself, which costs nothing whatever the document's size (no serialising, no
# guarded evaluator), with jq's meaning: a missing field or a field of null is null. Anything else
# (indexing a non-object, a claim-check reference) is left to jq.
_PLAIN_PATH = re.compile(r"\s*(?:\.|((?:\.[A-Za-z_][A-Za-z0-9_]*)+))\s*")
NOT_WALKED: Any = object()


@lru_cache(maxsize=8192)
def plain_path(program: str) -> tuple[str, ...] | None:
    """The fields of a program that is only a plain path (`.` is the empty path), else None."""
    match = _PLAIN_PATH.fullmatch(program)
    if match is None:
        return None
    return tuple(match.group(1).split(".")[1:]) if match.group(1) else ()


def walk_path(fields: tuple[str, ...], data: Any) -> Any:
    """The value at a plain path, as jq would give it, or `NOT_WALKED` when only jq can say."""
    value = data
    for name in fields:
        if value is None:
            return None
        if not isinstance(value, dict) or REF_KEY in value:
            return NOT_WALKED
        value = value.get(name)
    if not isinstance(value, dict | list):
        return value
    # A copy through JSON, as jq's answer would be; a large value (an aggregate of many outputs)
    # is left to the boundary, which stores it by reference rather than carry it through history.
    text = json.dumps(value, separators=(",", ":"))
    return json.loads(text) if len(text) <= IN_THREAD_MAX_INPUT_BYTES else NOT_WALKED


def walk_template(template: Any, data: Any) -> Any:
    """A template whose every program is a plain path, resolved by walking `data`; else NOT_WALKED."""
    if isinstance(template, str):
        try:
            parts = split_template(template)
        except ExpressionError:
            return NOT_WALKED
        if parts is None:
            return template
        values = []
        for part in parts:
            if not part.is_expression:
                values.append(part.text)
                continue
            fields = plain_path(part.text)
            value = NOT_WALKED if fields is None or forbidden_names(part.text) else walk_path(fields, data)
            if value is NOT_WALKED:
                return NOT_WALKED
            values.append(value)
        if len(parts) == 1 and parts[0].is_expression:
            return values[0]
        return "".join(value if not part.is_expression else _as_text(value) for part, value in zip(parts, values, strict=True))
    if isinstance(template, Mapping):
        resolved = {}
        for key, value in template.items():
            resolved[key] = walk_template(value, data)
            if resolved[key] is NOT_WALKED:
                return NOT_WALKED
        return resolved
    if isinstance(template, list | tuple):
        items = [walk_template(value, data) for value in template]
        return NOT_WALKED if any(item is NOT_WALKED for item in items) else items
    return template


class Document:
    """The data programs read, with named variables bound; serialised once as jq's input text."""

    def __init__(self, data: Any, variables: Mapping[str, Any] | None = None) -> None:
        self.data = data
        self.names = tuple(sorted(variables or {}))
        self.value = [dict(variables or {}), data] if self.names else data
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = json.dumps(self.value, separators=(",", ":"))
        return self._text


def fits_in_thread(template: Any, document: Document) -> bool:
    """Whether a template may be evaluated in the workflow thread: every program in it is provably
    cheap (`is_cheap`), and the document is small and holds no claim-check reference. A program with
    a forbidden builtin, or a malformed template, fits: it is refused at once either way."""
    try:
        programs = [program for _, program in iter_programs(template)]
    except ExpressionError:
        return True
    names = document.names
    return all(_program_fits(program, names) for program in programs) and (
        not programs or _document_fits(document)
    )


def program_fits_in_thread(program: str, document: Document) -> bool:
    """`fits_in_thread` for one bare program."""
    return _program_fits(program, document.names) and _document_fits(document)


def _program_fits(program: str, names: tuple[str, ...]) -> bool:
    """Cheap, or refused at once (a forbidden builtin, invalid jq)."""
    return _refusal(program) is not None or is_cheap(program) or not _compiles(program, names)


def _compiles(program: str, names: tuple[str, ...]) -> bool:
    try:
        _compiled(program, names)
    except ValueError:
        return False
    return True


def _document_fits(document: Document) -> bool:
    return len(document.text) <= IN_THREAD_MAX_INPUT_BYTES and REFERENCE_MARKER not in document.text


def evaluate_program(program: str, document: Document, max_result_bytes: int = MAX_RESULT_BYTES) -> Any:
    """The first value the program yields (None when it yields nothing), evaluated in this process
    with no cost check: callers decide where this may run (`fits_in_thread`, the guarded child)."""
    refusal = _refusal(program)
    if refusal is not None:
        raise ExpressionError(f"{refusal} in ${{ {program} }}", expression=program)
    try:
        text = _compiled(program, document.names).input_text(document.text).text()
    except ValueError as error:
        message = _jq_message(error, len(_prefix(document.names)))
        raise ExpressionError(f"{message} in ${{ {program} }}", expression=program) from None
    if len(text) > max_result_bytes:
        raise ExpressionError(
            f"result is {len(text):,} bytes, over the {max_result_bytes:,}-byte limit in ${{ {program} }}",
            expression=program,
        )
    first = text.split("\n", 1)[0] if text else ""
    return json.loads(first) if first else None


def evaluate_template_in(template: Any, document: Document, max_result_bytes: int = MAX_RESULT_BYTES) -> Any:
    """Resolve every `${ }` inside a template against one document; literals come back unchanged."""
    if isinstance(template, str):
        parts = split_template(template)
        if parts is None:
            return template
        if len(parts) == 1 and parts[0].is_expression:
            return evaluate_program(parts[0].text, document, max_result_bytes)
        return "".join(
            _as_text(evaluate_program(part.text, document, max_result_bytes)) if part.is_expression else part.text
            for part in parts
        )
    if isinstance(template, Mapping):
        return {key: evaluate_template_in(value, document, max_result_bytes) for key, value in template.items()}
    if isinstance(template, list | tuple):
        return [evaluate_template_in(value, document, max_result_bytes) for value in template]
    return template


def evaluate(program: str, data: Any, variables: Mapping[str, Any] | None = None) -> Any:
    """A cheap program on a small document, evaluated here and now; anything else is refused.

    For callers that hold a small, trusted document (tests, the compiler). Code that may meet any
    program or any data goes through the workflow boundary (`workflows/expression_boundary.py`) or
    the guarded evaluator (`activities/expression.py`).
    """
    document = Document(data, variables)
    if not program_fits_in_thread(program, document):
        raise _too_costly(program)
    return evaluate_program(program, document)


def evaluate_template(template: Any, data: Any, variables: Mapping[str, Any] | None = None) -> Any:
    """`evaluate` for every `${ }` of a template."""
    document = Document(data, variables)
    if not fits_in_thread(template, document):
        costly = next((p for _, p in iter_programs(template) if not _program_fits(p, document.names)), None)
        raise _too_costly(costly or "the template")
    return evaluate_template_in(template, document)


def _too_costly(program: str) -> ExpressionError:
    return ExpressionError(
        f"${{ {program} }} is not provably cheap on this input, so it is not evaluated in-process "
        "(the guarded evaluator runs it)",
        expression=program,
    )


class ExpressionRequest(BaseModel):
    """A template (or one bare program) to evaluate outside the workflow thread."""

    template: Any = None
    program: str | None = None  # when set, evaluated as one program (its text may hold braces)
    data: Any = None
    variables: dict[str, Any] | None = None
    # Where the result is stored by reference when large (the worker's activity), it may be larger.
    max_result_bytes: int = MAX_RESULT_BYTES


class ExpressionOutcome(BaseModel):
    """What the guarded evaluator answers: a value, or an expression error's message and details."""

    ok: bool
    value: Any = None
    error: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


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
