"""Helpers every command shares: settings from flags, clean exits, the error console."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

from rich.console import Console

from rte.config import Settings

err_console = Console(stderr=True)


def settings_from(**overrides: Any) -> Settings:
    """Settings from RTE_* variables, with the command's flags (when given) taking precedence."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})


def fail(message: str, code: int = 2, hint: str | None = None) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    if hint:
        err_console.print(f"  [dim]hint:[/] {hint}", highlight=False)
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    """Exit without running interpreter teardown.

    Short-lived processes holding a Temporal client can crash in teardown
    (temporalio/sdk-python#300); flushing and leaving with os._exit keeps the exit code and no
    crash text.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_async(coroutine: Coroutine[Any, Any, int]) -> NoReturn:
    try:
        code = asyncio.run(coroutine)
    except KeyboardInterrupt:
        code = 130
    exit_now(code)
