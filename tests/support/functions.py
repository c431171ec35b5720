"""Python step functions the tests register, the way a backend team would in its own module."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from rte.functions import function

calls: Counter[str] = Counter()


@function
def noop() -> None:
    return None


@function("add")
def add(a: float, b: float) -> float:
    calls["add"] += 1
    return a + b


@function
async def slow_double(value: int, seconds: float = 0.2) -> int:
    await asyncio.sleep(seconds)
    return value * 2


@function
def fail_on(value: int, bad: list[int]) -> int:
    if value in bad:
        raise ValueError(f"value {value} is not allowed")
    return value


@function
def record_call(name: str, marker_dir: str) -> str:
    """Leaves a file per call, so a test can count calls across worker processes."""
    path = Path(marker_dir)
    path.mkdir(parents=True, exist_ok=True)
    count = len(list(path.glob(f"{name}.*")))
    (path / f"{name}.{count}.{os.getpid()}").write_text("called")
    return name


@function
def blob(size: int) -> dict[str, Any]:
    """An output of about `size` bytes: a small field beside a large one."""
    line = "0123456789abcdef" * 4 + "\n"
    return {"name": "blob", "text": (line * (size // len(line) + 1))[:size]}


@function
def measure(value: Any) -> dict[str, Any]:
    """What the step was given: its size and digest as canonical JSON, and its type."""
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "type": type(value).__name__}
