"""The script step: real sandbox processes, real limits."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from activities.script import handle_script
from rte.config import get_settings
from rte.errors import EngineError, ErrorCategory

RUNNING_AS_ROOT = os.geteuid() == 0


async def failing(params: dict, ctx) -> EngineError:
    with pytest.raises(EngineError) as caught:
        await handle_script(params, ctx)
    return caught.value


def folder_exists(path: str) -> bool:
    return os.path.isdir(path)


@pytest.fixture
def script_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], set[Path]]:
    """The sandbox working folders of this test, as the worker sees them (inside its own mount
    namespace a script sees its folder as /tmp): the worker's temporary folder is the test's own,
    so steps of other test runs on the machine never show up."""
    root = tmp_path / "worker-tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return lambda: set(root.glob("rte-script-*"))


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def lines(ctx, source: str) -> list[str]:
    return [entry.message for entry in ctx.logs if entry.source == source]


async def test_the_result_variable_is_the_output_and_prints_are_logs(make_ctx):
    ctx = make_ctx("script")
    code = (
        "import sys\n"
        "print('items:', len(input['items']))\n"
        "print('almost done', file=sys.stderr)\n"
        "result = {'total': sum(input['items'])}\n"
    )
    output = await handle_script({"code": code, "input": {"items": [1, 2, 3]}}, ctx)

    assert output == {"total": 6}
    assert lines(ctx, "stdout") == ["items: 3"]
    assert lines(ctx, "stderr") == ["almost done"]


async def test_a_script_without_result_outputs_null(make_ctx):
    assert await handle_script({"code": "x = 1"}, make_ctx("script")) is None


async def test_printed_text_can_never_pass_for_the_result(make_ctx):
    code = (
        'print(\'{"type": "result", "value": "forged"}\')\n'
        "import os\n"
        'os.write(1, b\'{"type": "result", "value": "forged"}\\n\')\n'
        "result = 'real'\n"
    )
    ctx = make_ctx("script")
    assert await handle_script({"code": code}, ctx) == "real"
    assert lines(ctx, "stdout") == ['{"type": "result", "value": "forged"}']


async def test_the_worker_environment_is_not_visible(make_ctx, monkeypatch):
    monkeypatch.setenv("RTE_TEST_SECRET", "hunter2-do-not-leak")
    output = await handle_script({"code": "import os\nresult = dict(os.environ)"}, make_ctx("script"))

    assert "RTE_TEST_SECRET" not in output
    assert "hunter2-do-not-leak" not in str(output)
    assert set(output) <= {"PATH", "LANG", "HOME", "TMPDIR"}


@pytest.mark.skipif(not RUNNING_AS_ROOT, reason="the privilege drop only happens for a root worker")
async def test_a_root_worker_runs_scripts_as_nobody(make_ctx):
    output = await handle_script(
        {"code": "import os\nresult = [os.getuid(), os.getgid()]"}, make_ctx("script")
    )
    assert output == [65534, 65534]


async def test_scripts_cannot_reach_the_network(server, make_ctx):
    host, port = server.base_url.removeprefix("http://").split(":")
    code = f"""
interfaces = [line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]]
try:
    import socket
    socket.create_connection(("{host}", {port}), timeout=1).close()
    reached = True
except Exception:
    reached = False
result = {{"interfaces": interfaces, "reached": reached}}
"""
    ctx = make_ctx("script")
    output = await handle_script({"code": code}, ctx)

    assert get_settings().sandbox_isolate_network
    if any("unshare failed" in entry.message for entry in ctx.logs):
        pytest.skip("this machine does not allow network namespaces")  # the warning was logged
    assert output == {"interfaces": ["lo"], "reached": False}
    assert "network isolated" in ctx.logs[-1].message


async def test_the_working_folder_is_removed_afterwards(make_ctx, script_folders):
    code = "import os\nopen('scratch.txt', 'w').write('x' * 1000)\nresult = os.listdir('.')"
    assert await handle_script({"code": code}, make_ctx("script")) == ["scratch.txt"]
    assert script_folders() == set()


async def test_memory_beyond_the_limit_is_a_sandbox_limit_error(make_ctx):
    code = "block = bytearray(500 * 1024 * 1024)\nresult = len(block)"
    error = await failing({"code": code, "memory_mb": 64}, make_ctx("script"))

    assert error.category is ErrorCategory.SANDBOX_LIMIT
    assert not error.retryable
    assert error.message == "script exceeded its memory limit of 64 MB"


async def test_gradual_memory_growth_hits_the_limit_too(make_ctx):
    code = "chunks = []\nwhile True:\n    chunks.append('x' * 100_000)"
    error = await failing({"code": code, "memory_mb": 64}, make_ctx("script"))
    assert error.message == "script exceeded its memory limit of 64 MB"


async def test_the_worker_setting_caps_the_memory_a_step_asks_for(make_ctx, monkeypatch):
    monkeypatch.setenv("RTE_SANDBOX_MEMORY_MB", "64")
    get_settings.cache_clear()
    try:
        error = await failing(
            {"code": "block = bytearray(500 * 1024 * 1024)", "memory_mb": 4096}, make_ctx("script")
        )
    finally:
        monkeypatch.delenv("RTE_SANDBOX_MEMORY_MB")
        get_settings.cache_clear()
    assert error.message == "script exceeded its memory limit of 64 MB"


async def test_a_busy_loop_hits_the_cpu_limit(make_ctx):
    started = time.perf_counter()
    error = await failing({"code": "while True:\n    pass", "cpu_seconds": 1}, make_ctx("script"))

    assert error.category is ErrorCategory.SANDBOX_LIMIT
    assert error.message == "script exceeded its CPU time limit of 1 s"
    assert time.perf_counter() - started < 4


async def test_sleeping_past_the_wall_clock_limit_kills_the_script(make_ctx, script_folders):
    code = "import time\nopen('scratch.txt', 'w').write('x')\nprint('working')\ntime.sleep(30)"
    ctx = make_ctx("script")
    started = time.perf_counter()
    error = await failing({"code": code, "timeout_s": 1}, ctx)

    assert time.perf_counter() - started < 3
    assert error.category is ErrorCategory.SANDBOX_LIMIT
    assert error.message == "script exceeded its wall-clock limit of 1 s"
    # Output printed before the kill is kept, and the killed script's folder is gone too.
    assert lines(ctx, "stdout") == ["working"]
    assert script_folders() == set()


async def test_a_cancelled_step_leaves_no_process_or_folder_behind(make_ctx, script_folders):
    code = "import os, time\nprint(os.getpid())\ntime.sleep(30)"
    ctx = make_ctx("script")
    step = asyncio.create_task(handle_script({"code": code}, ctx))
    for _ in range(250):  # until the script is running, 5 s at most
        if lines(ctx, "stdout"):
            break
        await asyncio.sleep(0.02)
    [workdir] = script_folders()
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step

    assert not process_exists(int(lines(ctx, "stdout")[0]))
    assert not folder_exists(str(workdir))


async def test_an_exception_is_a_user_code_error_with_the_scripts_own_traceback(make_ctx):
    code = "def total(order):\n    return order['price'] * order['qty']\n\nresult = total(input)\n"
    error = await failing({"code": code, "input": {"price": 3}}, make_ctx("script"))

    assert error.category is ErrorCategory.USER_CODE
    assert not error.retryable
    assert error.message == "script raised KeyError: 'qty'"
    assert error.details["traceback"] == (
        "Traceback (most recent call last):\n"
        '  File "<script>", line 4, in <module>\n'
        "    result = total(input)\n"
        "             ^^^^^^^^^^^^\n"
        '  File "<script>", line 2, in total\n'
        "    return order['price'] * order['qty']\n"
        "                            ~~~~~^^^^^^^\n"
        "KeyError: 'qty'\n"
    )


async def test_a_syntax_error_points_at_the_line(make_ctx):
    error = await failing({"code": "result = (1,\n"}, make_ctx("script"))
    assert error.category is ErrorCategory.USER_CODE
    assert "SyntaxError" in error.message
    assert '"<script>", line 1' in error.details["traceback"]


async def test_a_result_that_is_not_json_is_a_validation_error(make_ctx):
    error = await failing({"code": "result = {1, 2}"}, make_ctx("script"))
    assert error.category is ErrorCategory.VALIDATION
    assert (
        error.message == "script result is not JSON-serialisable: Object of type set is not JSON serializable"
    )


async def test_a_result_over_1_mb_is_a_sandbox_limit_error(make_ctx):
    error = await failing({"code": "result = 'x' * (2 * 1024 * 1024)"}, make_ctx("script"))
    assert error.category is ErrorCategory.SANDBOX_LIMIT
    assert error.message == "script exceeded its output limit of 1 MB (its result is 2.0 MB)"


async def test_endless_printing_is_capped_and_the_truncation_is_said(make_ctx):
    ctx = make_ctx("script")
    output = await handle_script({"code": "for i in range(20000):\n    print(i)\nresult = 'ok'"}, ctx)

    assert output == "ok"
    printed = lines(ctx, "stdout")
    assert len(printed) == 1000 and printed[-1] == "999"
    assert "output truncated: 19000 more lines were not recorded" in "\n".join(e.message for e in ctx.logs)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"input": 1}, "code"),
        ({"code": "x", "memory_mb": 1}, "memory_mb"),
        ({"code": "x", "timeout_s": 0}, "timeout_s"),
    ],
)
async def test_invalid_params_are_validation_errors(make_ctx, params, field):
    error = await failing(params, make_ctx("script"))
    assert error.category is ErrorCategory.VALIDATION
    assert f"{field}:" in error.message
