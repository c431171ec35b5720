"""Claim check: large values travel through Temporal history as small references.

Temporal refuses a payload over 2 MB and a gRPC message over 4 MB, and every byte of a history is
replayed by every worker that rebuilds the execution. So a value over a threshold is stored once in
the SQL store, under the SHA-256 of its canonical JSON, and history carries a reference instead:

    {"$rte_ref": "<sha256 hex>", "bytes": 5242880, "kind": "object", "preview": "{\"a\":…"}

`offload` replaces the largest subtrees of a value by references until the value fits (so
`{"name": "x", "big": <5 MB>}` keeps `name` inline); `resolve` puts the content back. Both are pure
over a `PayloadStore` (put/get by key): the worker, the API and the CLI each pass the store they have.
Content addressing makes a value stored twice one row, and a reference a pure function of its
content (the same value always gives the same reference, which replay relies on).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from rte.errors import EngineError, ErrorCategory, json_type_name

REF_KEY = "$rte_ref"
REF_FIELDS = frozenset({REF_KEY, "bytes", "kind", "preview"})
DEFAULT_THRESHOLD_BYTES = 128 * 1024
# A subtree smaller than this is never worth a reference on its own (a reference is ~200 bytes).
MIN_REF_BYTES = 1024
PREVIEW_CHARS = 80
# An upper bound on a reference's JSON size (64 hex digits, a 20-digit size, the longest kind and
# a preview of PREVIEW_CHARS characters escaped at worst to 6 characters each).
_REF_MAX_BYTES = 140 + 6 * PREVIEW_CHARS
_HEX64 = re.compile(r"[0-9a-f]{64}")
_REF_MARKER = json.dumps(REF_KEY)  # how the key reads inside serialized JSON


class PayloadStore(Protocol):
    """Where referenced content lives (the SQL store's `payloads` repository in the engine)."""

    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes: ...


class PayloadNotFound(EngineError):
    """A reference whose content the store does not have (deleted, or another store)."""

    def __init__(self, key: str) -> None:
        super().__init__(
            ErrorCategory.INTERNAL,
            f"payload {key} is not in the payload store (it was removed, or the worker and the API "
            "use different databases)",
            retryable=False,
            details={"payload": key},
        )
        self.key = key


class ReferenceRefused(EngineError):
    """A payload reference where only plain data may come from outside (the API's 422)."""

    def __init__(self, path: str) -> None:
        message = (
            f"an object with the key '{REF_KEY}' (and only 'bytes', 'kind', 'preview' beside it) is a "
            "payload reference, which only the engine makes; rename the key"
        )
        super().__init__(ErrorCategory.VALIDATION, f"{path}: {message}", details={"path": path})
        self.violations = [{"path": path, "message": message}]


def is_reference(value: Any) -> bool:
    """Whether `value` is exactly a reference object (a user value merely using the key is not)."""
    return (
        isinstance(value, dict)
        and isinstance(value.get(REF_KEY), str)
        and value.keys() <= REF_FIELDS
        and _HEX64.fullmatch(value[REF_KEY]) is not None
        and isinstance(value.get("bytes"), int)
    )


def contains_reference(value: Any) -> bool:
    """Whether a reference is anywhere inside `value`."""
    if not isinstance(value, dict | list):
        return False
    if is_reference(value):
        return True
    # Serializing in C and looking for the key is far faster than a Python walk over a large value;
    # only a value that mentions the key at all is walked.
    if _REF_MARKER not in _dumps(value):
        return False
    return _walk_finds_reference(value)


def _walk_finds_reference(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if is_reference(node):
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def canonical_json(value: Any) -> bytes:
    """The bytes a value is stored and hashed as: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=to_jsonable_python
    ).encode()


def reference_to(value: Any, data: bytes | None = None) -> dict[str, Any]:
    """The reference for `value` (whose canonical JSON is `data`, when already computed)."""
    data = canonical_json(value) if data is None else data
    return {
        REF_KEY: hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "kind": json_type_name(value),
        "preview": data[: PREVIEW_CHARS * 2].decode(errors="ignore")[:PREVIEW_CHARS],
    }


async def offload(value: Any, store: PayloadStore, threshold_bytes: int, *, keep_root: bool = False) -> Any:
    """`value` itself when it serializes under `threshold_bytes`; otherwise a copy where the largest
    subtrees are references, as deep as is useful, so that it does.

    The whole value becomes one reference only when no split gets it under the threshold — unless
    `keep_root`: then an object keeps its keys and a list its length (run parameters, batch outputs),
    their largest members becoming references.
    """
    size = serialized_size(value)
    if size < threshold_bytes:
        return value
    shrunk = _shrink(value, size, threshold_bytes, keep=keep_root and isinstance(value, dict | list))
    return await _store_pending(shrunk, store)


Model = TypeVar("Model", bound=BaseModel)


async def offload_model(model: Model, store: PayloadStore, threshold_bytes: int) -> Model:
    """A message (an update's argument) whose large fields travel as references; a field that
    cannot hold a reference (a string) and is too large is a validation error naming it."""
    data = model.model_dump(mode="json")
    offloaded = await offload(data, store, threshold_bytes, keep_root=True)
    if offloaded is data:
        return model
    try:
        return type(model).model_validate(offloaded)
    except ValidationError as error:
        fields = ", ".join(".".join(str(part) for part in item["loc"]) for item in error.errors())
        raise EngineError(
            ErrorCategory.VALIDATION,
            f"{fields}: too large ({serialized_size(data):,} bytes in all; values over "
            f"{threshold_bytes:,} bytes are stored by reference, which this field cannot hold)",
        ) from None


async def resolve(value: Any, store: PayloadStore) -> Any:
    """`value` with every reference replaced by its content (references inside content too)."""
    if not contains_reference(value):
        return value
    contents: dict[str, Any] = {}
    done: dict[str, Any] = {}  # key → content with its own references resolved
    pending = _reference_keys(value)
    while pending:
        key = pending.pop()
        data = await store.get(key)
        contents[key] = json.loads(data)
        if _REF_MARKER.encode() in data:
            pending |= _reference_keys(contents[key]) - contents.keys()
        else:
            done[key] = contents[key]  # nothing inside to substitute: never walked
    return _substitute(value, contents, done)


# --------------------------------------------------------------------------------- internals


def serialized_size(value: Any) -> int:
    """An upper bound of the bytes `value` takes in a Temporal payload (compact JSON, UTF-8)."""
    return len(_dumps(value))


def resolved_size(value: Any) -> int:
    """`serialized_size` of the value its references stand for (their stored sizes counted)."""
    size = serialized_size(value)
    if not contains_reference(value):
        return size
    stack = [value]
    while stack:
        node = stack.pop()
        if is_reference(node):
            size += node["bytes"] - serialized_size(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return size


def _dumps(value: Any) -> str:
    # ensure_ascii: an upper bound of the UTF-8 size Temporal's converter writes, without encoding.
    return json.dumps(value, separators=(",", ":"), default=to_jsonable_python)


@dataclass
class _Pending:
    """A subtree chosen to become a reference (stored in the second phase)."""

    value: Any


@dataclass
class _Shrunk:
    value: Any  # the rebuilt value, or a _Pending when it becomes one reference as a whole
    size: int  # an upper bound of its serialized size
    slots: list[tuple[Any, Any]]  # (container, key) of every _Pending inside `value`


def _shrink(value: Any, size: int, limit: int, *, keep: bool) -> _Shrunk:
    """Rebuild `value` (of serialized `size`) to fit in `limit`, replacing its largest children first
    and descending into a child while splitting it still helps. Only the path to a replaced subtree
    is copied; everything else is shared with `value`."""
    if size <= limit:
        return _Shrunk(value, size, [])
    children = _children(value, every=keep) if keep or limit > _REF_MAX_BYTES else []
    if children:
        rebuilt: Any = dict(value) if isinstance(value, dict) else list(value)
        sizes = [(serialized_size(child), key) for key, child in children]
        sizes.sort(key=lambda pair: pair[0], reverse=True)
        current, slots = size, []
        for child_size, key in sizes:
            if current <= limit or child_size < (_REF_MAX_BYTES if keep else MIN_REF_BYTES):
                break  # the rest are smaller still: a reference would not save anything
            child = _shrink(value[key], child_size, max(child_size - (current - limit), 0), keep=False)
            rebuilt[key] = child.value
            current += child.size - child_size
            if isinstance(child.value, _Pending):
                slots.append((rebuilt, key))
            else:
                slots.extend(child.slots)
        if current <= limit or keep:
            return _Shrunk(rebuilt, current, slots)
    return _Shrunk(_Pending(value), _REF_MAX_BYTES, [])


def _children(value: Any, every: bool = False) -> list[tuple[Any, Any]]:
    """The children worth considering one by one: none for a container of small scalars only (a
    list of a million numbers cannot be split usefully, and is not walked) unless `every`."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return []
    splittable = every or any(
        isinstance(child, dict | list) or (isinstance(child, str) and len(child) >= MIN_REF_BYTES)
        for _key, child in items
    )
    return items if splittable else []


async def _store_pending(shrunk: _Shrunk, store: PayloadStore) -> Any:
    if isinstance(shrunk.value, _Pending):
        return await _put(shrunk.value.value, store, set())
    stored: set[str] = set()
    for container, key in shrunk.slots:
        container[key] = await _put(container[key].value, store, stored)
    return shrunk.value


async def _put(value: Any, store: PayloadStore, stored: set[str]) -> dict[str, Any]:
    data = canonical_json(value)
    reference = reference_to(value, data)
    if reference[REF_KEY] not in stored:
        await store.put(reference[REF_KEY], data)
        stored.add(reference[REF_KEY])
    return reference


def _reference_keys(value: Any) -> set[str]:
    keys: set[str] = set()
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if is_reference(node):
                keys.add(node[REF_KEY])
            else:
                stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return keys


def _substitute(value: Any, contents: dict[str, Any], done: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        if is_reference(value):
            key = value[REF_KEY]
            if key not in done:
                done[key] = _substitute(contents[key], contents, done)
            return done[key]
        return {name: _substitute(child, contents, done) for name, child in value.items()}
    if isinstance(value, list):
        return [_substitute(child, contents, done) for child in value]
    return value


def refuse_references(value: Any, where: str = "$") -> None:
    """Refuse reference objects in values given from outside (run parameters): references are made
    by the engine only, and one written by hand would be resolved, or fail, far from its cause."""
    if not contains_reference(value):
        return
    raise ReferenceRefused(_first_reference_path(value, where))


def _first_reference_path(value: Any, path: str) -> str:
    if is_reference(value):
        return path
    children = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, child in children:
        step = f"[{key}]" if isinstance(key, int) else f".{key}"
        if contains_reference(child):
            return _first_reference_path(child, path + step)
    return path
