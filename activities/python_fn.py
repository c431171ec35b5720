"""The `python` step: call a function the worker registered with `@function`.

Users register functions in their own modules (listed in `RTE_FUNCTION_MODULES`, imported by the
worker with `load_modules`):

    from rte.functions import function

    @function("send_invoice")
    async def send_invoice(customer_id: str, amount: float, context) -> dict: ...

A step `{kind: python, with: {function: send_invoice, args: {...}}}` then calls
`send_invoice(**args)`. Sync functions run in a thread so they never block the worker's event
loop. A parameter named `context` receives a read-only `FunctionContext` (execution id, step path,
item index, attempt, idempotency key, `log(level, message)`). The return value must be JSON.
An exception from the function fails the step as `user_code`, retried unless its class sets
`non_retryable = True`.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field

from activities.base import LogLevel, StepContext
from activities.http import parse_params
from rte.errors import EngineError, ErrorCategory, json_type_name

F = TypeVar("F", bound=Callable[..., Any])

_registry: dict[str, Callable[..., Any]] = {}
TRACEBACK_CHARS = 4000
_THIS_FILE = str(Path(__file__).resolve())


@overload
def function(name: F) -> F: ...
@overload
def function(name: str | None = None) -> Callable[[F], F]: ...
def function(name: str | Callable[..., Any] | None = None) -> Any:
    """Register a sync or async callable as a `python` step function: `@function` or `@function("name")`."""
    if callable(name):
        return _register(name, name.__name__)

    def decorate(fn: F) -> F:
        return _register(fn, name or fn.__name__)

    return decorate


def _register(fn: F, name: str) -> F:
    existing = _registry.get(name)
    # Re-importing the same module re-registers the same function: allowed. Two different
    # functions under one name would make steps ambiguous: refused at import time.
    if existing is not None and _origin(existing) != _origin(fn):
        raise EngineError(
            ErrorCategory.CONFIGURATION,
            f"function name '{name}' is already registered by {_origin(existing)}; "
            f"cannot register {_origin(fn)} under the same name",
        )
    _registry[name] = fn
    return fn


def _origin(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def registered_functions() -> list[str]:
    return sorted(_registry)


def load_modules(names: list[str]) -> None:
    """Import the modules that register functions; any failure names the module."""
    for module_name in names:
        try:
            importlib.import_module(module_name)
        except EngineError:
            raise
        except ModuleNotFoundError as exc:
            raise EngineError(
                ErrorCategory.CONFIGURATION,
                f"cannot import function module '{module_name}': {exc}",
                details={"module": module_name},
            ) from exc
        except Exception as exc:
            raise EngineError(
                ErrorCategory.CONFIGURATION,
                f"importing function module '{module_name}' failed: {type(exc).__name__}: {exc}",
                details={"module": module_name, "traceback": _trimmed_traceback(exc)},
            ) from exc


class FunctionContext:
    """What a function sees of its step; read-only."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: StepContext) -> None:
        object.__setattr__(self, "_ctx", ctx)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the function context is read-only")

    @property
    def execution_id(self) -> str:
        return self._ctx.request.execution_id

    @property
    def step_path(self) -> str:
        return self._ctx.request.step_path

    @property
    def item_index(self) -> int | None:
        return self._ctx.request.item_index

    @property
    def attempt(self) -> int:
        return self._ctx.attempt

    @property
    def idempotency_key(self) -> str:
        return self._ctx.idempotency_key

    def log(self, level: LogLevel, message: str) -> None:
        self._ctx.log(level, message, "function")


class PythonParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)


def _trimmed_traceback(exc: BaseException) -> str:
    # Drop the engine's own frames (this module, asyncio/threading plumbing) so the user sees theirs.
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename != _THIS_FILE
        and not any(part in frame.filename for part in ("/asyncio/", "/concurrent/futures/", "/threading.py"))
    ]
    text = "".join(
        ["Traceback (most recent call last):\n"]
        + traceback.format_list(frames)
        + traceback.format_exception_only(type(exc), exc)
    )
    return text if len(text) <= TRACEBACK_CHARS else "…" + text[-TRACEBACK_CHARS:]


async def handle_python(params: dict[str, Any], ctx: StepContext) -> Any:
    p = parse_params(PythonParams, params, "python")
    fn = _registry.get(p.function)
    if fn is None:
        known = ", ".join(registered_functions()) or "none"
        raise EngineError(
            ErrorCategory.CONFIGURATION,
            f"no function named '{p.function}' is registered on this worker (registered: {known})",
            details={"function": p.function, "registered": registered_functions()},
        )

    kwargs = dict(p.args)
    signature = inspect.signature(fn)
    if "context" in signature.parameters:
        kwargs["context"] = FunctionContext(ctx)
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        # A mismatch between the step's args and the signature is a definition mistake, not a crash.
        raise EngineError(
            ErrorCategory.VALIDATION, f"function '{p.function}' cannot take these args: {exc}"
        ) from None

    try:
        if inspect.iscoroutinefunction(fn):
            result = await fn(**kwargs)
        else:
            result = await asyncio.to_thread(fn, **kwargs)
            if inspect.isawaitable(result):
                result = await result
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(
            ErrorCategory.USER_CODE,
            ctx.redact(f"function '{p.function}' raised {type(exc).__name__}: {exc}"),
            retryable=getattr(exc, "non_retryable", False) is not True,
            details={
                "function": p.function,
                "error_type": type(exc).__name__,
                "message": ctx.redact(str(exc)),
                "traceback": ctx.redact(_trimmed_traceback(exc)),
            },
        ) from exc

    try:
        # Round-trip so the output is plain JSON (tuples → lists) exactly as it will be stored.
        return json.loads(json.dumps(result, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise EngineError(
            ErrorCategory.VALIDATION,
            f"function '{p.function}' returned a value that is not JSON-serialisable: {exc}",
            details={"function": p.function, "result_type": json_type_name(result)},
        ) from None
