"""Definition text (YAML or JSON) → plain Python data plus where every value sits in the text.

Both syntaxes are read at C speed: JSON with the standard library, YAML with libyaml's parser (PyYAML's
`CParser`, events only) and a small loop here that builds plain data from its events, with YAML 1.2
core-schema scalars (`yes`, `on` and `no` stay text; `true`, `false`, `null`, `~`, numbers with `0o`,
`0x`, `0b`, `_`), duplicate keys refused, anchors and aliases bounded (`MAX_ALIASED_VALUES`), nesting
bounded (`MAX_NESTING`) and unknown tags refused. Dates and times stay the text they were written as.
Nothing here recurses, so no document can overflow a stack.

Where every value sits (line:column) is only worked out when a diagnostic needs it: the text is read
once more, then — JSON by a tokenizer, YAML from the same events — so a definition that compiles
cleanly never pays for it. A 1,000-step definition parses in tens of milliseconds either way.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from yaml import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.error import Mark, MarkedYAMLError, YAMLError
from yaml.reader import ReaderError

try:
    from yaml._yaml import CParser as _Parser  # libyaml
except ImportError:  # pragma: no cover - PyYAML built without libyaml: the same events, slower
    from yaml import BaseLoader as _Parser  # type: ignore[assignment]

from rte.errors import json_type_name
from workflows.diagnostics import DataPath, Diagnostic, make_diagnostic
from workflows.syntax_errors import json_syntax_error, yaml_syntax_error

MAX_SOURCE_CHARS = 5_000_000
# Aliases can make a small text expand into a huge value ("billion laughs"): cap the values that
# aliases add (the rest is bounded by the size of the text).
MAX_ALIASED_VALUES = 100_000
# Mappings and lists inside each other deeper than this are refused (later stages recurse).
MAX_NESTING = 200

Position = tuple[int, int]  # 1-based line, column


_Positions = tuple[dict[DataPath, Position], dict[DataPath, Position]]  # values, keys


class SourceMap(Mapping[DataPath, Position]):
    """Where the values (and mapping keys) of a parsed definition sit in its text, by data path.

    As a mapping it holds the position of every mapping value and sequence item; `key()` gives the
    position of a mapping key. Positions are computed on first use: a definition that compiles
    cleanly never pays for them.
    """

    def __init__(self, load: Callable[[], _Positions]) -> None:
        self._load = load
        self._positions: _Positions | None = None

    @property
    def _maps(self) -> _Positions:
        if self._positions is None:
            try:
                self._positions = self._load()
            except (YAMLError, _Unsupported, RecursionError, ValueError):
                self._positions = ({}, {})  # positions are a courtesy; diagnostics still carry the path
        return self._positions

    def value(self, path: DataPath) -> Position | None:
        return self._maps[0].get(tuple(path))

    def key(self, path: DataPath) -> Position | None:
        if not path or not isinstance(path[-1], str):
            return self.value(path)
        return self._maps[1].get(tuple(path))

    def locate(self, path: DataPath, *, at_key: bool = False) -> Position | None:
        """The position of `path`, or of its nearest ancestor's key when `path` is absent (a missing field)."""
        exact = self.key(path) if at_key else self.value(path)
        if exact is not None:
            return exact
        for depth in range(len(path) - 1, -1, -1):
            found = self.key(path[:depth])
            if found is not None:
                return found
        return None

    def __getitem__(self, path: DataPath) -> Position:
        return self._maps[0][tuple(path)]

    def __iter__(self) -> Iterator[DataPath]:
        return iter(self._maps[0])

    def __len__(self) -> int:
        return len(self._maps[0])


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')


def _json_positions(text: str) -> _Positions:
    """Positions in JSON text that `json.loads` already accepted: one pass over its tokens."""
    line_starts = [0] + [match.end() for match in re.finditer("\n", text)]
    values: dict[DataPath, Position] = {}
    keys: dict[DataPath, Position] = {}
    # One frame per open container: [its path, the current key or index, whether a key comes next].
    frames: list[list[Any]] = []

    def position(offset: int) -> Position:
        line = bisect.bisect_right(line_starts, offset)
        return (line, offset - line_starts[line - 1] + 1)

    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        frame = frames[-1] if frames else None
        if token == ",":
            if frame is not None and isinstance(frame[1], int):
                frame[1] += 1
            elif frame is not None:
                frame[2] = True
        elif token in "}]":
            frames.pop()
        elif token == ":":
            continue
        elif frame is not None and frame[2]:
            frame[1], frame[2] = json.loads(token), False
            keys[(*frame[0], frame[1])] = position(match.start())
        else:
            path = () if frame is None else (*frame[0], frame[1])
            values[path] = position(match.start())
            if token == "{":
                frames.append([path, None, True])
            elif token == "[":
                frames.append([path, 0, False])
    return values, keys


@dataclass(frozen=True)
class Source:
    data: dict[str, Any]
    positions: SourceMap
    syntax: Literal["yaml", "json"]


class _Unsupported(Exception):
    """A value JSON cannot hold, or a YAML construct definitions do not allow (E005, or E001/E002)."""

    def __init__(
        self, code: str, message: str, path: DataPath, mark: Mark | None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path
        self.position = (mark.line + 1, mark.column + 1) if mark is not None else None
        self.hint = hint

    def diagnostic(self) -> Diagnostic:
        return make_diagnostic(self.code, self.message, self.path, self.position, self.hint)


class _DuplicateJsonKey(Exception):
    pass


def parse_source(text: str, *, strict_json: bool = False) -> tuple[Source | None, list[Diagnostic]]:
    """Parse a definition; on failure the Source is None and the diagnostics say why and where.

    Text that starts like JSON but is not JSON is read as YAML (flow style is a superset), unless
    `strict_json` (a `.json` file) asks for JSON's own error.
    """
    if len(text) > MAX_SOURCE_CHARS:
        return None, [
            make_diagnostic(
                "E003",
                f"the definition is {len(text):,} characters, over the {MAX_SOURCE_CHARS:,}-character limit",
                hint="split it into smaller workflows",
            )
        ]
    text = text.removeprefix("\ufeff")
    json_error: json.JSONDecodeError | None = None
    if text.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(text, object_pairs_hook=_pairs_without_duplicates, parse_constant=_no_constant)
        except json.JSONDecodeError as error:
            if strict_json:
                return None, [json_syntax_error(error, text)]
            json_error = error  # may still be YAML flow style, e.g. `{id: x, steps: []}`
        except (_DuplicateJsonKey, ValueError):
            pass  # the YAML reader reports duplicate keys and NaN with their position
        except RecursionError:
            return None, [make_diagnostic("E001", "invalid JSON: values are nested too deeply")]
        else:
            return _checked_root(data, SourceMap(lambda: _json_positions(text)), "json")
    try:
        data = _load_yaml(text)
    except _Unsupported as problem:
        return None, [problem.diagnostic()]
    except YAMLError as error:
        if json_error is not None:
            return None, [json_syntax_error(json_error, text)]
        return None, [yaml_syntax_error(error, text)]
    positions = SourceMap(lambda: _yaml_positions(text))
    return _checked_root(
        data, positions, "json" if json_error is None and text.lstrip()[:1] == "{" else "yaml"
    )


def _checked_root(
    data: Any, positions: SourceMap, syntax: Literal["yaml", "json"]
) -> tuple[Source | None, list[Diagnostic]]:
    if data is None:
        return None, [
            make_diagnostic("E004", "the definition is empty", hint="start with `id:` and `steps:`")
        ]
    if not isinstance(data, dict):
        found = "a list" if isinstance(data, list) else f"a single {json_type_name(data)} value"
        return None, [
            make_diagnostic(
                "E004",
                f"a definition must be a mapping of fields at the top level, found {found}",
                (),
                positions.value(()) or (1, 1),
                "start with `id:` and `steps:`",
            )
        ]
    return Source(data, positions, syntax), []


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateJsonKey
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# YAML ---------------------------------------------------------------------------------------------

_CORE = "tag:yaml.org,2002:"
# YAML 1.2 core schema, as ruamel.yaml reads it (underscores in numbers allowed).
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_INT = re.compile(r"[-+]?(?:0b[0-1_]+|0o?[0-7_]+|[0-9_]+|0x[0-9a-fA-F_]+)")
_FLOAT = re.compile(
    r"[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+(?:[eE][-+][0-9]+)?)"
)
_NOT_FINITE = re.compile(r"[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
_INT_BASES = {"0b": 2, "0o": 8, "0x": 16}
_NUMBER_START = frozenset("-+0123456789.")
_NO_KEY = object()  # a mapping frame waits for a key
_MERGE = object()  # the key `<<`: the value is merged into the mapping


class _Frame:
    """A mapping or list being built: its value, the key its next value goes under, and anchoring."""

    __slots__ = ("anchor", "key", "mark", "merges", "size_before", "value")

    def __init__(self, value: dict[str, Any] | list[Any], anchor: str | None, mark: Mark, size: int) -> None:
        self.value = value
        self.key: Any = _NO_KEY
        self.anchor = anchor
        self.mark = mark
        self.merges: list[tuple[Any, Mark]] = []
        self.size_before = size

    def path_part(self) -> str | int | None:
        if isinstance(self.value, list):
            return len(self.value)
        return self.key if isinstance(self.key, str) else None


def _load_yaml(text: str) -> Any:
    """Plain data from YAML text, built from libyaml's events without recursion."""
    parser = _Parser(text)
    stack: list[_Frame] = []
    anchors: dict[str, tuple[Any, int]] = {}  # name → (value, number of values in it)
    open_anchors: set[str] = set()
    aliased = 0
    size = 0  # values built so far (aliases count the values they repeat)
    root: Any = None
    documents = 0

    def path() -> DataPath:
        return tuple(part for frame in stack if (part := frame.path_part()) is not None)

    def place(value: Any, mark: Mark) -> None:
        nonlocal root
        if not stack:
            root = value
            return
        frame = stack[-1]
        if isinstance(frame.value, list):
            frame.value.append(value)
        elif frame.key is _NO_KEY:
            if value is _MERGE:
                frame.key = _MERGE
                return
            if not isinstance(value, str):
                raise _Unsupported(
                    "E005",
                    f"mapping keys must be text, found {_described(value)}",
                    path(),
                    mark,
                    _key_hint(value),
                )
            if value in frame.value:
                raise _Unsupported(
                    "E002",
                    f"duplicate key '{value}' in a mapping",
                    (*path(), value),
                    mark,
                    "each key may appear only once; remove or rename one of them",
                )
            frame.key = value
        elif frame.key is _MERGE:
            frame.merges.append((value, mark))
            frame.key = _NO_KEY
        else:
            frame.value[frame.key] = value
            frame.key = _NO_KEY

    try:
        while True:
            event = parser.get_event()
            kind = type(event)
            if kind is ScalarEvent:
                size += 1
                value = _scalar(event, stack, path)
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1)
                place(value, event.start_mark)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                _check_collection_tag(event, path)
                if len(stack) >= MAX_NESTING:
                    raise _Unsupported(
                        "E001", "invalid YAML: values are nested too deeply", path(), event.start_mark
                    )
                size += 1
                container: dict[str, Any] | list[Any] = {} if kind is MappingStartEvent else []
                if event.anchor is not None:
                    open_anchors.add(event.anchor)
                stack.append(_Frame(container, event.anchor, event.start_mark, size))
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                frame = stack.pop()
                value = _merged(frame, path) if frame.merges else frame.value
                if frame.anchor is not None:
                    open_anchors.discard(frame.anchor)
                    anchors[frame.anchor] = (value, size - frame.size_before + 1)
                place(value, frame.mark)
            elif kind is AliasEvent:
                if event.anchor in open_anchors:
                    raise _Unsupported(
                        "E005",
                        "an alias refers to a value that contains it",
                        path(),
                        event.start_mark,
                        "remove the recursive alias",
                    )
                if event.anchor not in anchors:
                    raise MarkedYAMLError(
                        None, None, f"found undefined alias '{event.anchor}'", event.start_mark
                    )
                value, count = anchors[event.anchor]
                aliased += count
                size += count
                if aliased > MAX_ALIASED_VALUES:
                    raise _Unsupported(
                        "E005",
                        f"aliases expand the definition by more than {MAX_ALIASED_VALUES:,} values",
                        path(),
                        event.start_mark,
                        "aliases (*name) that repeat large anchors multiply the size; write the values out",
                    )
                place(value, event.start_mark)
            elif kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise MarkedYAMLError(
                        None, None, "expected a single document, found another", event.start_mark
                    )
            elif kind is StreamEndEvent:
                return root
    except ReaderError as error:
        mark = _mark_at(text, error.position)
        raise _Unsupported("E001", f"invalid YAML: {_reader_problem(error)}", (), mark) from None
    finally:
        parser.dispose()


def _described(value: Any) -> str:
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    return "null" if value is None else f"{json_type_name(value)} {json.dumps(value)}"


def _key_hint(value: Any) -> str | None:
    if isinstance(value, dict | list):
        return "use text keys; a mapping or list cannot be a key"
    return f"quote the key: '{'' if value is None else json.dumps(value)}'"


def _scalar(event: ScalarEvent, stack: list[_Frame], path: Callable[[], DataPath]) -> Any:
    value: str = event.value
    tag = event.tag
    if tag is None or tag == "!":
        if tag is None and event.implicit[0]:
            if value == "<<" and stack and stack[-1].key is _NO_KEY and isinstance(stack[-1].value, dict):
                return _MERGE
            return _plain(value, path, event.start_mark)
        return value
    if tag.startswith(_CORE):
        kind = tag[len(_CORE) :]
        if kind in ("str", "timestamp"):
            return value  # dates and times stay the text they were written as
        converted = _plain(value, path, event.start_mark)
        wanted = {"int": int, "float": float, "bool": bool, "null": type(None)}.get(kind)
        if wanted is float and type(converted) is int:
            return float(converted)
        if wanted is not None and type(converted) is wanted:
            return converted
        if wanted is not None:
            raise _Unsupported(
                "E005",
                f"{value!r} is not a valid !!{kind}",
                path(),
                event.start_mark,
                f"remove the tag !!{kind}",
            )
    raise _Unsupported(
        "E005", f"YAML tag {_shown_tag(tag)!r} is not supported", path(), event.start_mark, "remove the tag"
    )


def _plain(value: str, path: Callable[[], DataPath], mark: Mark) -> Any:
    """A plain scalar in the YAML 1.2 core schema: null, bool, int, float or text."""
    if value in _NULLS:
        return None
    if value in _BOOLS:
        return _BOOLS[value]
    if value[:1] not in _NUMBER_START:
        return value
    if _NOT_FINITE.fullmatch(value):
        number = float(value.replace(".", ""))
        raise _Unsupported(
            "E005", f"{number} is not a finite number", path(), mark, "quote it if you meant text"
        )
    digits = value.replace("_", "")
    try:
        if _INT.fullmatch(value):
            sign = -1 if digits[:1] == "-" else 1
            digits = digits.lstrip("+-")
            base = _INT_BASES.get(digits[:2], 10)
            return sign * int(digits[2:] if base != 10 else digits, base)
        if _FLOAT.fullmatch(value):
            return float(digits)
    except ValueError:
        pass  # e.g. `+_`: underscores only
    return value


def _merged(frame: _Frame, path: Callable[[], DataPath]) -> dict[str, Any]:
    """`<<: *defaults` (or a list of them): the merged mappings' keys, then the mapping's own."""
    merged: dict[str, Any] = {}
    for value, mark in frame.merges:
        sources = value if isinstance(value, list) else [value]
        for source in sources:
            if not isinstance(source, dict):
                raise _Unsupported(
                    "E005", "`<<` merges mappings only", path(), mark, "write `<<: *anchor` of a mapping"
                )
            for key, item in source.items():
                merged.setdefault(key, item)  # the first mapping listed wins
    merged.update(frame.value)
    return merged


def _check_collection_tag(
    event: MappingStartEvent | SequenceStartEvent, path: Callable[[], DataPath]
) -> None:
    tag = event.tag
    if tag is None or tag == "!" or tag == _CORE + ("map" if type(event) is MappingStartEvent else "seq"):
        return
    raise _Unsupported(
        "E005", f"YAML tag {_shown_tag(tag)!r} is not supported", path(), event.start_mark, "remove the tag"
    )


def _shown_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def _yaml_positions(text: str) -> _Positions:
    """Positions from libyaml's events (0-based marks made 1-based). An alias sits where it is
    written; the values it repeats sit where its anchor's values are."""
    values: dict[DataPath, Position] = {}
    keys: dict[DataPath, Position] = {}
    # Anchored collections: what was recorded inside each (to repeat under its aliases), and the
    # ones still open with the number of frames open when they started.
    anchored: dict[str, tuple[DataPath, list[tuple[bool, DataPath, Position]]]] = {}
    open_anchors: list[tuple[str, int]] = []
    # One frame per open collection: [its path, the current key or index, whether a key comes next].
    frames: list[list[Any]] = []

    def record(is_key: bool, path: DataPath, position: Position) -> None:
        (keys if is_key else values)[path] = position
        for name, _ in open_anchors:
            anchored[name][1].append((is_key, path, position))

    parser = _Parser(text)
    try:
        while True:
            event = parser.get_event()
            kind = type(event)
            if kind is StreamEndEvent:
                return values, keys
            if kind is MappingEndEvent or kind is SequenceEndEvent:
                frames.pop()
                if open_anchors and open_anchors[-1][1] == len(frames):
                    open_anchors.pop()
                if frames:
                    _advance(frames[-1])
                continue
            if kind not in _NODE_EVENTS:
                continue
            mark = event.start_mark
            frame = frames[-1] if frames else None
            if frame is not None and frame[2]:  # a key
                if kind is not ScalarEvent:
                    return values, keys  # a mapping or list as a key: never in a valid definition
                frame[1], frame[2] = event.value, False
                record(True, (*frame[0], frame[1]), (mark.line + 1, mark.column + 1))
                continue
            path = () if frame is None else (*frame[0], frame[1])
            record(False, path, (mark.line + 1, mark.column + 1))
            if kind is AliasEvent and event.anchor in anchored:
                anchor, inside = anchored[event.anchor]
                for is_key, inner, position in list(inside):
                    record(is_key, (*path, *inner[len(anchor) :]), position)
            if kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.anchor is not None:
                    anchored[event.anchor] = (path, [])
                    open_anchors.append((event.anchor, len(frames)))
                frames.append([path, None, True] if kind is MappingStartEvent else [path, 0, False])
            elif frame is not None:
                _advance(frame)
    finally:
        parser.dispose()


_NODE_EVENTS = frozenset({ScalarEvent, AliasEvent, MappingStartEvent, SequenceStartEvent})


def _advance(frame: list[Any]) -> None:
    """After a value: a list moves to its next index, a mapping waits for its next key."""
    if isinstance(frame[1], int) and not frame[2]:
        frame[1] += 1
    else:
        frame[2] = True


def _mark_at(text: str, offset: int) -> Mark:
    line = text.count("\n", 0, offset)
    column = offset - (text.rfind("\n", 0, offset) + 1)
    return Mark("<input>", offset, line, column, None, None)


def _reader_problem(error: ReaderError) -> str:
    return str(error).splitlines()[0]  # "unacceptable character #x0001: control characters are not allowed"
