"""The guarded evaluator: jq programs that are not provably cheap, evaluated in child processes with a
time and a memory limit, and the `rte.expression` local activity the interpreter calls for them.

The workflow thread never runs such a program (see `workflows/expression_boundary.py`): it asks this
activity, whose answer is recorded in history, so a replay never evaluates the program again and a
wall clock never decides a workflow's branch.

Children are long-lived (a pool of `POOL_SIZE`, started on first use) and answer one JSON request per
line, so an evaluation costs a pipe round trip, not a process start. A child that runs past its time
limit, or dies from its memory limit, is killed and replaced; the caller gets an expression error.
Evaluations wait for a free child asynchronously: nothing here blocks the worker's event loop, and
a runaway program only ever holds its own child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import weakref
from typing import Any

from temporalio import activity

from rte.claim_check import DEFAULT_THRESHOLD_BYTES, PayloadStore, contains_reference, offload, resolve
from rte.errors import EngineError
from workflows.expressions import ExpressionOutcome, ExpressionRequest

ACTIVITY_NAME = "rte.expression"
POOL_SIZE = 2
TIME_LIMIT_S = 2.0
STARTUP_TIMEOUT_S = 60.0
CHILD_MEMORY_BYTES = 512 * 1024 * 1024
# A result the activity stores by reference may be this large (the child's memory bounds it anyway).
OFFLOADED_RESULT_MAX_BYTES = 64 * 1024 * 1024
# A request or answer line can hold a whole document; asyncio's default line limit is 64 KiB.
_LINE_LIMIT = 64 * 1024 * 1024


class _Child:
    """One evaluator process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> _Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from activities.expression import serve; serve()",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            limit=_LINE_LIMIT,
        )
        child = cls(process)
        # Imports take a while on a busy machine: they must not count against an evaluation's limit.
        assert process.stdout is not None
        try:
            ready = await asyncio.wait_for(process.stdout.readline(), STARTUP_TIMEOUT_S)
        except BaseException:
            await child.kill()
            raise
        if ready.strip() != b"ready":
            await child.kill()
            raise RuntimeError("the expression evaluator did not start")
        return child

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def ask(self, request: bytes, time_limit_s: float) -> bytes:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(request + b"\n")
        await self.process.stdin.drain()
        return await asyncio.wait_for(self.process.stdout.readline(), time_limit_s)

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        await self.process.wait()


class GuardedEvaluator:
    """A pool of evaluator children, shared by every evaluation in this process."""

    def __init__(self, size: int = POOL_SIZE, time_limit_s: float = TIME_LIMIT_S) -> None:
        self.time_limit_s = time_limit_s
        self._size = size
        self._idle: asyncio.Queue[_Child | None] | None = None

    def _pool(self) -> asyncio.Queue[_Child | None]:
        if self._idle is None:  # created in the running loop; None is a slot with no child yet
            self._idle = asyncio.Queue()
            for _ in range(self._size):
                self._idle.put_nowait(None)
        return self._idle

    async def evaluate(self, request: ExpressionRequest) -> ExpressionOutcome:
        pool = self._pool()
        child = await pool.get()
        try:
            if child is None or not child.alive:
                child = None
                child = await _Child.start()
            line = await child.ask(request.model_dump_json().encode(), self.time_limit_s)
            if not line:  # the child died: its memory limit, most likely
                await child.kill()
                child = None
                return _failure("the expression used more than its memory limit", request)
            return ExpressionOutcome.model_validate_json(line)
        except TimeoutError:
            if child is None:  # it never started
                return _failure("the expression evaluator did not start in time", request)
            await child.kill()
            child = None
            return _failure(f"the expression ran longer than its {self.time_limit_s:g} s limit", request)
        except BaseException:
            if child is not None:
                await child.kill()
            child = None
            raise
        finally:
            pool.put_nowait(child)


def _failure(reason: str, request: ExpressionRequest) -> ExpressionOutcome:
    program = request.program if request.program is not None else _first_program(request.template)
    where = f" in ${{ {program} }}" if program else ""
    return ExpressionOutcome(ok=False, error=f"{reason}{where}", details={"expression": program} if program else {})


def _first_program(template: Any) -> str | None:
    from workflows.expressions import iter_programs

    try:
        return next((program for _, program in iter_programs(template)), None)
    except Exception:  # noqa: BLE001 - only used to name the expression in a message
        return None


# Pipes and queues belong to one event loop: one pool per loop (a worker and an API in one test
# process run on different loops).
_evaluators: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, GuardedEvaluator] = weakref.WeakKeyDictionary()


async def evaluate_guarded(request: ExpressionRequest) -> ExpressionOutcome:
    """Evaluate a request in this loop's guarded pool (the worker's activity, the API's debugger)."""
    loop = asyncio.get_running_loop()
    evaluator = _evaluators.get(loop)
    if evaluator is None:
        evaluator = _evaluators[loop] = GuardedEvaluator()
    return await evaluator.evaluate(request)


class ExpressionActivity:
    """The local activity behind `workflows/expression_boundary.py`: claim-check references in the
    document are resolved from the payload store first, and a large result is stored and answered
    by reference, so neither reaches history whole."""

    def __init__(self, payloads: PayloadStore | None = None, offload_bytes: int = DEFAULT_THRESHOLD_BYTES) -> None:
        self.payloads = payloads
        self.offload_bytes = offload_bytes

    @activity.defn(name=ACTIVITY_NAME)
    async def evaluate(self, request: ExpressionRequest) -> ExpressionOutcome:
        if self.payloads is not None:  # a large result is stored, not returned whole
            request = request.model_copy(update={"max_result_bytes": OFFLOADED_RESULT_MAX_BYTES})
        if self.payloads is not None and (
            contains_reference(request.data) or contains_reference(request.variables)
        ):
            try:
                request = request.model_copy(
                    update={
                        "data": await resolve(request.data, self.payloads),
                        "variables": await resolve(request.variables, self.payloads),
                    }
                )
            except EngineError as error:
                return ExpressionOutcome(ok=False, error=error.message, details=error.details)
        outcome = await evaluate_guarded(request)
        if outcome.ok and self.payloads is not None:
            outcome.value = await offload(outcome.value, self.payloads, self.offload_bytes)
        return outcome


def serve() -> None:
    """A child's loop: read a request per line, answer a line."""
    import resource

    from workflows.expressions import Document, evaluate_program, evaluate_template_in

    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        try:
            request = ExpressionRequest.model_validate_json(line)
            document = Document(request.data, request.variables)
            limit = request.max_result_bytes
            if request.program is not None:
                value = evaluate_program(request.program, document, limit)
            else:
                value = evaluate_template_in(request.template, document, limit)
            answer = ExpressionOutcome(ok=True, value=value)
        except EngineError as error:
            answer = ExpressionOutcome(ok=False, error=error.message, details=error.details)
        except MemoryError:
            answer = ExpressionOutcome(ok=False, error="the expression used more than its memory limit")
        except Exception as error:  # noqa: BLE001 - every failure becomes an answer
            answer = ExpressionOutcome(ok=False, error=str(error))
        sys.stdout.write(answer.model_dump_json() + "\n")
        sys.stdout.flush()


