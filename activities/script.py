"""The `script` step: a Python snippet run in a separate, locked-down process.

The snippet reads the step's input from a variable named `input` and leaves its output in a
variable named `result` (null when unset; it must be JSON-serialisable). `print()` output and
writes to stderr become the step's `stdout`/`stderr` log lines (at most 1,000 lines / 1 MB per step).

    with:
      code: |
        total = sum(line["price"] * line["qty"] for line in input["lines"])
        print("lines:", len(input["lines"]))
        result = {"total": total}
      input: ${ .order }

The process (`worker/sandbox_runner.py`, which documents the protocol and the isolation order)
starts with an empty environment — no secrets — in a fresh temporary folder that is removed
afterwards, in a session of its own. In a mount namespace of its own, that folder is also its
/tmp, /var/tmp and /dev/shm, and the data folder is hidden. It limits its own memory (RLIMIT_AS),
CPU seconds and processes, drops to `nobody` when the worker runs as root, detaches from the
network when `settings.sandbox_isolate_network`, and installs a seccomp filter
(`activities/script_seccomp.py`) that this module builds once it knows the process id. This module
enforces the wall clock by killing the whole process group, and reads the output incrementally
with caps so a chatty or hostile script cannot exhaust the worker's memory. What is and is not
contained, for a root and a non-root worker: docs/security.md, "The script sandbox".
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import os
import shutil
import signal
import stat
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from activities.base import StepContext
from activities.http import parse_params
from activities.script_seccomp import UnsupportedArchitecture, ensure_supported, seccomp_program
from rte.config import get_settings
from rte.errors import EngineError, ErrorCategory

RUNNER_PATH = Path(__file__).resolve().parents[1] / "worker" / "sandbox_runner.py"
NOBODY = 65534
MAX_OUTPUT_BYTES = 1024 * 1024
MAX_LOG_LINES = 1000
MAX_LOG_BYTES = 1024 * 1024
MAX_LINE_CHARS = 8192
OPEN_FILES = 64
FILE_SIZE_MB = 16
STDERR_TAIL_CHARS = 2000
PR_SET_DUMPABLE = 4
# The runner's own environment: set here, nothing inherited from the worker.
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class ScriptParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1)
    input: Any = None
    timeout_s: float | None = Field(None, gt=0, description="Wall clock; capped by sandbox_wall_seconds.")
    memory_mb: int | None = Field(
        None, ge=48, description="Whole process, interpreter (~30 MB) included; capped by sandbox_memory_mb."
    )
    cpu_seconds: int | None = Field(None, ge=1, description="Capped by sandbox_cpu_seconds.")


@dataclass(frozen=True)
class SandboxLimits:
    memory_mb: int
    cpu_seconds: int
    wall_seconds: float

    @classmethod
    def for_params(cls, params: ScriptParams) -> SandboxLimits:
        settings = get_settings()
        return cls(
            memory_mb=min(params.memory_mb or settings.sandbox_memory_mb, settings.sandbox_memory_mb),
            cpu_seconds=min(params.cpu_seconds or settings.sandbox_cpu_seconds, settings.sandbox_cpu_seconds),
            wall_seconds=min(
                params.timeout_s or settings.sandbox_wall_seconds, settings.sandbox_wall_seconds
            ),
        )


@functools.cache
def _runner_source() -> str:
    # Passed with `-c`: works from a checkout and an installed package alike, and needs no file
    # the sandbox user could be unable to read.
    return RUNNER_PATH.read_text(encoding="utf-8")


@dataclass
class _Transcript:
    """What the runner said: logs go straight to the step context (capped), frames are kept."""

    ctx: StepContext
    final: dict[str, Any] | None = None
    sandbox: dict[str, Any] | None = None
    lines: int = 0
    bytes: int = 0
    dropped: int = 0
    stderr_tail: str = ""
    oversized_frame: bool = False
    started: float = field(default_factory=time.perf_counter)

    def log(self, stream: str, line: str) -> None:
        if stream == "stderr":
            self.stderr_tail = (self.stderr_tail + line + "\n")[-STDERR_TAIL_CHARS:]
        size = len(line.encode())
        if self.lines >= MAX_LOG_LINES or self.bytes + size > MAX_LOG_BYTES:
            self.dropped += 1
            return
        self.lines += 1
        self.bytes += size
        self.ctx.log("info" if stream == "stdout" else "warning", line, stream)

    def frame(self, raw: bytes, cut: bool) -> None:
        if cut:
            self.oversized_frame = True  # only a result can be this long
            return
        try:
            frame = json.loads(raw)
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            self.log("stdout", raw.decode("utf-8", "replace"))
            return
        kind = frame.get("type")
        if kind == "log":
            self.log(str(frame.get("stream")), str(frame.get("line")))
        elif kind == "truncated":
            self.dropped += int(frame.get("lines") or 0)
        elif kind == "sandbox":
            self.sandbox = frame
        elif kind in ("result", "error"):
            self.final = frame


async def _lines(stream: asyncio.StreamReader, max_len: int) -> AsyncIterator[tuple[bytes, bool]]:
    """Lines of `stream` without their newline; a line longer than `max_len` comes cut, once."""
    pending = bytearray()
    skipping = False  # inside the rest of a line already reported as cut
    while chunk := await stream.read(64 * 1024):
        pending += chunk
        while (end := pending.find(b"\n")) >= 0:
            line = bytes(pending[:end])
            del pending[: end + 1]
            if skipping:
                skipping = False
            else:
                yield line, False
        if len(pending) > max_len:
            if not skipping:
                yield bytes(pending[:max_len]), True
            skipping = True
            pending.clear()
    if pending and not skipping:
        yield bytes(pending), False


async def _read_frames(stream: asyncio.StreamReader, transcript: _Transcript) -> None:
    async for raw, cut in _lines(stream, MAX_OUTPUT_BYTES + 64 * 1024):
        transcript.frame(raw, cut)


async def _read_stderr(stream: asyncio.StreamReader, transcript: _Transcript) -> None:
    async for raw, cut in _lines(stream, MAX_LINE_CHARS):
        transcript.log("stderr", raw.decode("utf-8", "replace") + (" …[line cut]" if cut else ""))


async def _feed(stdin: asyncio.StreamWriter, payload: bytes) -> None:
    try:
        stdin.write(payload)
        await stdin.drain()
        stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the runner died early; its exit status tells why


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, signal.SIGKILL)


def _remove_tree(path: Path) -> None:
    # A script may leave folders without write permission; make them removable and retry.
    def make_writable_and_retry(function: Any, target: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(target), stat.S_IRWXU)
        function(target)

    shutil.rmtree(path, onerror=make_writable_and_retry)


@functools.cache
def _protect_worker() -> None:
    """A non-root worker shares its uid with the scripts: make it non-dumpable, so they cannot
    read its memory or environment (database URL, secret key) through /proc/<pid>/."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(
        PR_SET_DUMPABLE, ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)
    ):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")


def _runner_config(limits: SandboxLimits, drop_privileges: bool) -> dict[str, Any]:
    settings = get_settings()
    return {
        "memory_mb": limits.memory_mb,
        "cpu_seconds": limits.cpu_seconds,
        "isolate_network": settings.sandbox_isolate_network,
        # Covered inside the sandbox's mount namespace: the store, the key file, Temporal's database.
        "hidden_dirs": [str(settings.data_dir.resolve())],
        "drop_to_uid": NOBODY if drop_privileges else None,
        "drop_to_gid": NOBODY if drop_privileges else None,
        "open_files": OPEN_FILES,
        "file_size_mb": FILE_SIZE_MB,
        "max_output_bytes": MAX_OUTPUT_BYTES,
        "max_log_lines": MAX_LOG_LINES,
        "max_log_bytes": MAX_LOG_BYTES,
        "max_line_chars": MAX_LINE_CHARS,
    }


async def _run_runner(
    payload: bytes, limits: SandboxLimits, workdir: Path, drop_privileges: bool, transcript: _Transcript
) -> tuple[int, bool]:
    """Run the sandbox process to its end; answer (exit status, whether the wall clock killed it)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-I",
        "-c",
        _runner_source(),
        json.dumps(_runner_config(limits, drop_privileges)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=workdir,
        env=dict(SANDBOX_ENV, HOME=str(workdir), TMPDIR=str(workdir)),
        start_new_session=True,  # its own process group, so one killpg ends everything it started
    )
    assert process.stdin and process.stdout and process.stderr
    # The filter names the runner's pid (the only process it may signal), so it is built now and
    # travels first in the stdin payload (a JSON object: splice one more member in front).
    program = json.dumps(seccomp_program(process.pid)).encode()
    payload = b'{"seccomp": ' + program + b", " + payload[1:]
    timed_out = False
    try:
        async with asyncio.timeout(limits.wall_seconds):
            await asyncio.gather(
                _feed(process.stdin, payload),
                _read_frames(process.stdout, transcript),
                _read_stderr(process.stderr, transcript),
            )
            await process.wait()
    except TimeoutError:
        timed_out = True
    finally:
        # Also reached when the activity is cancelled: never leave the process behind.
        if process.returncode is None:
            _kill_group(process.pid)
            await process.wait()
    return process.returncode, timed_out


def _failure(
    transcript: _Transcript, returncode: int, timed_out: bool, limits: SandboxLimits, ctx: StepContext
) -> EngineError | None:
    """The error the run ended in, judged from what the runner reported or how it died; None on success."""
    details: dict[str, Any] = {
        "limits": {
            "memory_mb": limits.memory_mb,
            "cpu_seconds": limits.cpu_seconds,
            "wall_seconds": limits.wall_seconds,
        },
        "exit_status": returncode,
    }
    if transcript.stderr_tail:
        details["stderr_tail"] = ctx.redact(transcript.stderr_tail)

    def limit(which: str) -> EngineError:
        return EngineError(
            ErrorCategory.SANDBOX_LIMIT, f"script exceeded its {which}", retryable=False, details=details
        )

    final = transcript.final or {}
    kind = final.get("kind")
    if timed_out:
        return limit(f"wall-clock limit of {limits.wall_seconds:g} s")
    if final.get("type") == "result":
        return None
    if kind == "memory":
        return limit(f"memory limit of {limits.memory_mb} MB")
    if kind == "cpu":
        return limit(f"CPU time limit of {limits.cpu_seconds} s")
    if kind == "output" or transcript.oversized_frame:
        size = final.get("size")
        shown = f" (its result is {size / 1024 / 1024:.1f} MB)" if isinstance(size, int) else ""
        return limit(f"output limit of {MAX_OUTPUT_BYTES // (1024 * 1024)} MB{shown}")
    if kind == "not_json":
        return EngineError(
            ErrorCategory.VALIDATION,
            f"script {final.get('message')}",
            details=details,
        )
    if kind == "user_code":
        message = f"script raised {final.get('error_type')}: {final.get('message')}"
        if final.get("error_type") == "SystemExit":
            message = f"script failed: {final.get('message')}"
        details.update(error_type=final.get("error_type"), traceback=ctx.redact(final.get("traceback") or ""))
        return EngineError(ErrorCategory.USER_CODE, ctx.redact(message), retryable=False, details=details)
    if kind == "setup":
        return EngineError(
            ErrorCategory.CONFIGURATION,
            f"the script sandbox could not be set up: {final.get('message')}",
            details=details,
        )
    # No final frame: the process died. The runner answers MemoryError itself, so a kill we did not
    # send is the kernel's CPU hard limit; a crash signal is almost always memory exhaustion.
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return limit(f"CPU time limit of {limits.cpu_seconds} s")
    if (
        returncode in (-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS)
        or "MemoryError" in transcript.stderr_tail
    ):
        return limit(f"memory limit of {limits.memory_mb} MB")
    return EngineError(
        ErrorCategory.USER_CODE,
        f"the script process ended with exit status {returncode} without reporting a result",
        retryable=False,
        details=details,
    )


async def handle_script(params: dict[str, Any], ctx: StepContext) -> Any:
    p = parse_params(ScriptParams, params, "script")
    limits = SandboxLimits.for_params(p)
    try:
        payload = json.dumps({"code": p.code, "input": p.input}, allow_nan=False).encode()
    except ValueError as exc:
        raise EngineError(ErrorCategory.VALIDATION, f"script input is not valid JSON: {exc}") from None
    drop_privileges = os.geteuid() == 0
    try:
        ensure_supported()
    except UnsupportedArchitecture as exc:
        raise EngineError(ErrorCategory.CONFIGURATION, str(exc)) from None
    if not drop_privileges:
        _protect_worker()

    transcript = _Transcript(ctx)
    workdir = Path(tempfile.mkdtemp(prefix="rte-script-"))
    try:
        if drop_privileges:
            os.chown(workdir, NOBODY, NOBODY)
        returncode, timed_out = await _run_runner(payload, limits, workdir, drop_privileges, transcript)
    finally:
        # In a thread: a script may leave many files behind.
        await asyncio.to_thread(_remove_tree, workdir)

    if transcript.dropped:
        ctx.log(
            "warning",
            f"output truncated: {transcript.dropped} more lines were not recorded "
            f"(at most {MAX_LOG_LINES} lines / {MAX_LOG_BYTES // (1024 * 1024)} MB per step)",
        )
    sandbox = transcript.sandbox or {}
    for note in ("network_note", "tmp_note"):
        if sandbox.get(note):
            ctx.log("warning", f"sandbox: {sandbox[note]}")
    elapsed_ms = (time.perf_counter() - transcript.started) * 1000
    ctx.log(
        "debug",
        f"script ran in {elapsed_ms:.0f} ms as uid {sandbox.get('uid', '?')}, "
        f"{'private' if sandbox.get('tmp_private') else 'shared'} /tmp, seccomp "
        f"{'on' if sandbox.get('seccomp') else 'off'}, network "
        f"{'isolated' if sandbox.get('network_isolated') else 'not isolated'}, limits "
        f"{limits.memory_mb} MB / {limits.cpu_seconds} s CPU / {limits.wall_seconds:g} s wall, "
        f"exit status {returncode}",
    )
    error = _failure(transcript, returncode, timed_out, limits, ctx)
    if error is not None:
        raise error
    return transcript.final["value"] if transcript.final else None
