"""JSON from outside (API bodies, `rte run --input`): bounded nesting and valid Unicode text.

Both limits protect what comes after parsing. Python's parser and pydantic recurse, so a document
nested a few hundred levels deep fails deep inside the engine (`RecursionError`, "maximum
serialization depth exceeded" when Temporal encodes the run input) instead of at the boundary. And
JSON may spell lone UTF-16 surrogates (`"\\ud800"`) that no UTF-8 encoder accepts, so such a string
cannot be stored or sent to Temporal. Both are refused here with the JSON path of the first offence.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Deep enough for any real parameter document; far from the parsers' recursion limits.
MAX_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonInputError(ValueError):
    """A JSON document the engine refuses; `path` says where (`$.params.a[0]`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


def loads(text: str | bytes) -> Any:
    """Parse JSON and check it; `json.JSONDecodeError` for malformed text, `JsonInputError` for the rest."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JsonInputError("$", f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    check(value)
    return value


def may_need_check(raw: bytes) -> bool:
    """False when `raw` certainly passes `check` (not enough brackets to be deep, no surrogate in
    sight), so the common small body is never parsed twice."""
    brackets = raw.count(b"[") + raw.count(b"{")
    # A surrogate is either escaped (\\udXXX) or raw UTF-8 (0xED 0xA0-0xBF …), which Python's
    # parser accepts from bytes.
    return brackets > MAX_DEPTH or b"\\u" in raw or b"\xed" in raw


def check(value: Any) -> None:
    """Refuse nesting deeper than `MAX_DEPTH` and strings (keys included) with lone surrogates."""
    stack: list[tuple[Any, str, int]] = [(value, "$", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            _check_text(node, path)
            continue
        if not isinstance(node, dict | list):
            continue
        if depth >= MAX_DEPTH:
            raise JsonInputError(path, f"nested too deeply (more than {MAX_DEPTH} levels)")
        if isinstance(node, dict):
            for key, child in node.items():
                child_path = _member(path, key)
                _check_text(key, child_path)
                stack.append((child, child_path, depth + 1))
        else:
            stack.extend((child, f"{path}[{index}]", depth + 1) for index, child in enumerate(node))


def _check_text(text: str, path: str) -> None:
    found = _SURROGATE.search(text)
    if found:
        raise JsonInputError(
            path,
            f"contains a lone UTF-16 surrogate (\\u{ord(found.group()):04x} at character {found.start()}), "
            "which is not valid Unicode text",
        )


def _member(path: str, key: str) -> str:
    safe = key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else json.dumps(key, ensure_ascii=True)
    return f"{path}.{safe}" if safe is key else f"{path}[{safe}]"
