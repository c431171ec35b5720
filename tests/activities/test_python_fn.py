"""The python step: the function registry, module loading, and how user code fails."""

from __future__ import annotations

import asyncio
import textwrap
import time
import uuid
from datetime import datetime

import pytest

from activities.python_fn import handle_python, load_modules, registered_functions
from rte.errors import EngineError, ErrorCategory
from rte.functions import function


class PaymentDeclined(Exception):
    non_retryable = True


@function
def add_tax(amount: float, rate: float = 0.2) -> dict:
    return {"total": round(amount * (1 + rate), 2)}


@function("tests.slow_sync")
def slow_sync(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


@function("tests.async_greeting")
async def greeting(name: str) -> str:
    await asyncio.sleep(0)
    return f"hello {name}"


@function("tests.with_context")
def with_context(order_id: str, context) -> dict:
    context.log("info", f"charging order {order_id}")
    return {
        "execution_id": context.execution_id,
        "step_path": context.step_path,
        "item_index": context.item_index,
        "attempt": context.attempt,
        "idempotency_key": context.idempotency_key,
    }


@function("tests.context_is_read_only")
async def context_is_read_only(context) -> None:
    context.attempt = 99


@function("tests.explode")
def explode(customer: str) -> None:
    raise ValueError(f"customer {customer} has no address")


@function("tests.declined")
async def declined() -> None:
    raise PaymentDeclined("card declined")


@function("tests.returns_datetime")
def returns_datetime() -> datetime:
    return datetime(2024, 1, 1)


@function("tests.returns_tuple")
def returns_tuple() -> tuple[int, int]:
    return (1, 2)


async def failing(params: dict, ctx) -> EngineError:
    with pytest.raises(EngineError) as caught:
        await handle_python(params, ctx)
    return caught.value


async def test_a_sync_function_is_called_with_its_args(make_ctx):
    output = await handle_python({"function": "add_tax", "args": {"amount": 100}}, make_ctx("python"))
    assert output == {"total": 120.0}


async def test_a_sync_function_does_not_block_the_worker_loop(make_ctx):
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    output = await handle_python(
        {"function": "tests.slow_sync", "args": {"seconds": 0.3}}, make_ctx("python")
    )
    ticking.cancel()
    assert output == "done"
    assert ticks >= 10


async def test_an_async_function_registered_under_a_custom_name(make_ctx):
    assert "tests.async_greeting" in registered_functions()
    output = await handle_python(
        {"function": "tests.async_greeting", "args": {"name": "Ada"}}, make_ctx("python")
    )
    assert output == "hello Ada"


async def test_a_context_parameter_receives_the_step_identity_and_a_logger(make_ctx):
    ctx = make_ctx("python", execution_id="exec-7", step_path="main/charge", item_index=3, attempt=2)
    output = await handle_python({"function": "tests.with_context", "args": {"order_id": "o-1"}}, ctx)

    assert output == {
        "execution_id": "exec-7",
        "step_path": "main/charge",
        "item_index": 3,
        "attempt": 2,
        "idempotency_key": ctx.idempotency_key,
    }
    assert [(entry.level, entry.message) for entry in ctx.logs] == [("info", "charging order o-1")]


async def test_the_context_cannot_be_modified(make_ctx):
    error = await failing({"function": "tests.context_is_read_only"}, make_ctx("python"))
    assert error.category is ErrorCategory.USER_CODE
    assert "read-only" in error.message


async def test_an_unknown_function_lists_the_registered_names(make_ctx):
    error = await failing({"function": "send_invoice"}, make_ctx("python"))
    assert error.category is ErrorCategory.CONFIGURATION
    assert "no function named 'send_invoice'" in error.message
    assert "add_tax" in error.message and "tests.async_greeting" in error.message


async def test_args_the_function_does_not_take_are_a_validation_error(make_ctx):
    error = await failing(
        {"function": "add_tax", "args": {"amount": 1, "currency": "EUR"}}, make_ctx("python")
    )
    assert error.category is ErrorCategory.VALIDATION
    assert "currency" in error.message


async def test_a_user_exception_is_a_retryable_user_code_error_with_its_traceback(make_ctx):
    error = await failing({"function": "tests.explode", "args": {"customer": "c-9"}}, make_ctx("python"))

    assert error.category is ErrorCategory.USER_CODE
    assert error.retryable
    assert error.message == "function 'tests.explode' raised ValueError: customer c-9 has no address"
    assert error.details["error_type"] == "ValueError"
    trace = error.details["traceback"]
    assert 'raise ValueError(f"customer {customer} has no address")' in trace
    assert "/activities/python_fn.py" not in trace and "asyncio" not in trace
    assert trace.count("File ") == 1


async def test_an_exception_marked_non_retryable_is_not_retried(make_ctx):
    error = await failing({"function": "tests.declined"}, make_ctx("python"))
    assert error.category is ErrorCategory.USER_CODE
    assert not error.retryable
    assert "PaymentDeclined: card declined" in error.message


async def test_a_result_that_is_not_json_is_a_validation_error(make_ctx):
    error = await failing({"function": "tests.returns_datetime"}, make_ctx("python"))
    assert error.category is ErrorCategory.VALIDATION
    assert "not JSON-serialisable" in error.message


async def test_results_come_back_as_plain_json(make_ctx):
    assert await handle_python({"function": "tests.returns_tuple"}, make_ctx("python")) == [1, 2]


async def test_a_missing_function_name_is_a_validation_error(make_ctx):
    error = await failing({"args": {}}, make_ctx("python"))
    assert error.category is ErrorCategory.VALIDATION
    assert "function:" in error.message


async def test_two_functions_cannot_share_a_name():
    with pytest.raises(EngineError) as caught:

        @function("add_tax")
        def another_add_tax() -> None: ...

    assert caught.value.category is ErrorCategory.CONFIGURATION
    assert "already registered" in caught.value.message


def _write_module(tmp_path, monkeypatch, source: str) -> str:
    name = f"user_functions_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


async def test_loading_a_module_registers_its_functions(tmp_path, monkeypatch, make_ctx):
    module = _write_module(
        tmp_path,
        monkeypatch,
        """
        from rte.functions import function

        @function("loaded.double")
        def double(x: int) -> int:
            return 2 * x
        """,
    )
    load_modules([module])
    assert await handle_python({"function": "loaded.double", "args": {"x": 21}}, make_ctx("python")) == 42


def test_a_missing_module_is_a_configuration_error_naming_it():
    with pytest.raises(EngineError) as caught:
        load_modules(["no_such_functions_module"])
    assert caught.value.category is ErrorCategory.CONFIGURATION
    assert "'no_such_functions_module'" in caught.value.message


def test_a_module_failing_at_import_is_a_configuration_error_naming_it(tmp_path, monkeypatch):
    module = _write_module(tmp_path, monkeypatch, "raise RuntimeError('DATABASE_URL is not set')\n")
    with pytest.raises(EngineError) as caught:
        load_modules([module])
    assert caught.value.category is ErrorCategory.CONFIGURATION
    assert caught.value.message == (
        f"importing function module '{module}' failed: RuntimeError: DATABASE_URL is not set"
    )
