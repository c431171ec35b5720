"""Definition text (YAML or JSON) → plain Python data plus where every value sits in the text.

JSON is read with the standard library (C speed) and only re-read with ruamel.yaml when a diagnostic
actually needs a position: a visual editor posts JSON through the API, and a 1,000-step definition then
parses in milliseconds instead of half a second. YAML goes through the ruamel.yaml round-trip loader,
whose nodes remember their line and column.
"""

from __future__ import annotations

import bisect
import datetime
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarbool import ScalarBoolean

from workflows.diagnostics import DataPath, Diagnostic, make_diagnostic

MAX_SOURCE_CHARS = 5_000_000
# Aliases can make a small text expand into a huge value ("billion laughs"): cap the values that
# aliases add (the rest is bounded by the size of the text).
MAX_ALIASED_VALUES = 100_000

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
            except (YAMLError, RecursionError, ValueError):
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


def _tree_positions(tree: Any) -> _Positions:
    """Positions from ruamel.yaml's round-trip nodes (0-based `lc` data made 1-based)."""
    values: dict[DataPath, Position] = {}
    keys: dict[DataPath, Position] = {}
    lc = getattr(tree, "lc", None)
    if lc is not None and lc.line is not None:
        values[()] = (lc.line + 1, lc.col + 1)
    pending: list[tuple[Any, DataPath]] = [(tree, ())]
    visited: set[int] = set()
    while pending:
        node, path = pending.pop()
        if not isinstance(node, CommentedMap | CommentedSeq) or id(node) in visited:
            continue  # an alias repeats a node: its values sit where the anchor is
        visited.add(id(node))
        for part, entry in (node.lc.data or {}).items():
            child = (*path, part)
            if isinstance(node, CommentedMap):
                keys[child] = (entry[0] + 1, entry[1] + 1)
                values[child] = (entry[2] + 1, entry[3] + 1)
            else:
                values[child] = (entry[0] + 1, entry[1] + 1)
            pending.append((node[part], child))
    return values, keys


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


@dataclass
class _Expansion:
    seen: set[int] = field(default_factory=set)
    depth_in_alias: int = 0  # > 0 while converting a node an alias repeats
    aliased_values: int = 0


class _Unsupported(Exception):
    def __init__(self, path: DataPath, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.hint = hint


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
                return None, [_json_syntax_error(error)]
            json_error = error  # may still be YAML flow style, e.g. `{id: x, steps: []}`
        except (_DuplicateJsonKey, ValueError):
            pass  # ruamel reports duplicate keys and NaN with their position
        except RecursionError:
            return None, [make_diagnostic("E001", "invalid JSON: values are nested too deeply")]
        else:
            positions = SourceMap(lambda: _json_positions(text))
            return _checked_root(data, positions, "json")
    try:
        tree = _yaml().load(text)
    except DuplicateKeyError as error:
        return None, [_duplicate_key(error)]
    except YAMLError as error:
        if json_error is not None:
            return None, [_json_syntax_error(json_error)]
        return None, [_yaml_syntax_error(error)]
    except RecursionError:
        return None, [make_diagnostic("E001", "invalid YAML: values are nested too deeply")]
    positions = SourceMap(lambda: _tree_positions(tree))
    try:
        data = _to_plain(tree, (), _Expansion(), set())
    except _Unsupported as problem:
        return None, [
            make_diagnostic(
                "E005", problem.message, problem.path, positions.locate(problem.path), problem.hint
            )
        ]
    except RecursionError:
        return None, [make_diagnostic("E001", "invalid YAML: values are nested too deeply")]
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
        found = "a list" if isinstance(data, list) else f"a single {type(data).__name__} value"
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


def _yaml() -> YAML:
    # One instance per parse: ruamel.yaml loaders keep state and are not thread-safe.
    loader = YAML(typ="rt")
    loader.allow_duplicate_keys = False
    return loader


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateJsonKey
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _to_plain(node: Any, path: DataPath, state: _Expansion, open_nodes: set[int]) -> Any:
    """ruamel.yaml's round-trip types → dict, list, str, int, float, bool, None."""
    if isinstance(node, dict | list):
        if id(node) in open_nodes:
            raise _Unsupported(
                path, "an alias refers to a value that contains it", "remove the recursive alias"
            )
        repeated = id(node) in state.seen
        state.seen.add(id(node))
        state.depth_in_alias += repeated
        _count_aliased(state, path)
        open_nodes.add(id(node))
        try:
            return _plain_container(node, path, state, open_nodes)
        finally:
            open_nodes.discard(id(node))
            state.depth_in_alias -= repeated
    _count_aliased(state, path)
    if node is None or isinstance(node, bool):
        return node
    if isinstance(node, ScalarBoolean):
        return bool(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        if math.isnan(node) or math.isinf(node):
            raise _Unsupported(path, f"{node} is not a finite number", "quote it if you meant text")
        return float(node)
    if isinstance(node, datetime.date):
        return node.isoformat()  # YAML reads 2024-01-31 as a date; definitions are JSON data
    if isinstance(node, TaggedScalar):
        raise _Unsupported(path, f"YAML tag {node.tag.value!r} is not supported", "remove the tag")
    raise _Unsupported(
        path, f"a {type(node).__name__} value is not supported in definitions", "use JSON-compatible values"
    )


def _count_aliased(state: _Expansion, path: DataPath) -> None:
    if not state.depth_in_alias:
        return
    state.aliased_values += 1
    if state.aliased_values > MAX_ALIASED_VALUES:
        raise _Unsupported(
            path,
            f"aliases expand the definition by more than {MAX_ALIASED_VALUES:,} values",
            "aliases (*name) that repeat large anchors multiply the size; write the values out",
        )


def _plain_container(node: dict | list, path: DataPath, state: _Expansion, open_nodes: set[int]) -> Any:
    if isinstance(node, list):
        return [_to_plain(value, (*path, index), state, open_nodes) for index, value in enumerate(node)]
    result: dict[str, Any] = {}
    for key, value in node.items():
        if not isinstance(key, str):
            raise _Unsupported(
                path,
                f"mapping keys must be text, found {type(key).__name__} {key!r}",
                f"quote the key: '{key}'",
            )
        result[key] = _to_plain(value, (*path, key), state, open_nodes)
    return result


def _yaml_syntax_error(error: YAMLError) -> Diagnostic:
    mark = None
    message = str(error).strip().splitlines()[0] if str(error).strip() else "syntax error"
    if isinstance(error, MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        message = error.problem or error.context or message
        if error.context and error.problem:
            message = f"{error.problem} ({error.context})"
    position = (mark.line + 1, mark.column + 1) if mark is not None else None
    return make_diagnostic("E001", f"invalid YAML: {message}", (), position, _syntax_hint(message))


def _syntax_hint(message: str) -> str | None:
    if "'\\t'" in message or "tab" in message.lower():
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in message:
        return "quote values that contain ': ', e.g. message: \"note: done\""
    if "found character '@'" in message or "found character '`'" in message:
        return "quote values that start with @ or `"
    return None


def _json_syntax_error(error: json.JSONDecodeError) -> Diagnostic:
    return make_diagnostic("E001", f"invalid JSON: {error.msg}", (), (error.lineno, error.colno))


def _duplicate_key(error: DuplicateKeyError) -> Diagnostic:
    mark = error.problem_mark
    key = str(error.problem or "")
    if key.startswith('found duplicate key "'):
        key = key[len('found duplicate key "') :].split('" with value', 1)[0]
    return make_diagnostic(
        "E002",
        f"duplicate key '{key}' in a mapping",
        (),
        (mark.line + 1, mark.column + 1) if mark is not None else None,
        "each key may appear only once; remove or rename one of them",
    )
