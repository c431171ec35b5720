"""Python step functions the tests register, the way a backend team would in its own module."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

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
