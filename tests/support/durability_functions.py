"""Step functions for the fault-injection tests: steps that take a while, cooperatively or not, and
leave a file per finished call so a test can count runs across worker processes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from rte.functions import function


def _mark(marker_dir: str, name: str) -> None:
    path = Path(marker_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / f"{name}.{os.getpid()}.{time.monotonic_ns()}").write_text("done")


def _first_call(marker_dir: str, name: str) -> bool:
    path = Path(marker_dir)
    path.mkdir(parents=True, exist_ok=True)
    try:
        (path / f"{name}.started").touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


@function
async def sleep_then_mark(seconds: float, marker_dir: str, name: str) -> str:
    """Sleeps (cancellable), then leaves a file naming the process that finished the call."""
    await asyncio.sleep(seconds)
    _mark(marker_dir, name)
    return name


@function
async def sleep_once(seconds: float, marker_dir: str, name: str) -> str:
    """Sleeps (cancellable) on its first call only: a retry returns at once."""
    if _first_call(marker_dir, name):
        await asyncio.sleep(seconds)
    _mark(marker_dir, name)
    return name


@function
def block_once(seconds: float, marker_dir: str, name: str) -> str:
    """Like sleep_once, but sync: it blocks a thread that no cancellation can interrupt."""
    if _first_call(marker_dir, name):
        time.sleep(seconds)
    _mark(marker_dir, name)
    return name
