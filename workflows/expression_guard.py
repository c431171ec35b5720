"""Evaluate jq programs that might loop or grow in a child process with a time and memory limit.

The child is long-lived (one per process, started on first use) and answers one JSON request per
line, so a guarded evaluation costs a pipe round trip, not a process start. When a program runs past
its time limit the child is killed and replaced; the caller gets a `GuardError` and carries on.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
from typing import Any

CHILD_MEMORY_BYTES = 512 * 1024 * 1024
MAX_RESULT_BYTES = 1_000_000


class GuardError(Exception):
    pass


class _Child:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from workflows.expression_guard import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
            close_fds=True,
        )

    def ask(self, request: bytes, timeout_s: float) -> bytes:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(request + b"\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            raise TimeoutError
        line = self.process.stdout.readline()
        if not line:
            raise GuardError("the expression used more than its memory limit")
        return line

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


_lock = threading.Lock()
_child: _Child | None = None


def evaluate(program: str, data: Any, timeout_s: float) -> str:
    """The program's output as jq text (one JSON value per line)."""
    global _child
    request = json.dumps({"program": program, "data": data}).encode()
    with _lock:
        if _child is None or _child.process.poll() is not None:
            _child = _Child()
        try:
            answer = json.loads(_child.ask(request, timeout_s))
        except TimeoutError:
            _child.kill()
            _child = None
            raise GuardError(f"the expression ran longer than its {timeout_s:g} s limit") from None
        except GuardError:
            _child.kill()
            _child = None
            raise
    if "error" in answer:
        raise ValueError(answer["error"])
    return answer["text"]


def serve() -> None:
    """The child's loop: read a request per line, answer a line."""
    import resource
    from functools import lru_cache

    import jq

    compiled = lru_cache(maxsize=1024)(jq.compile)
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
    for line in sys.stdin:
        try:
            request = json.loads(line)
            text = compiled(request["program"]).input_value(request["data"]).text()
            if len(text) > MAX_RESULT_BYTES:
                answer = {"error": f"result is over the {MAX_RESULT_BYTES:,}-byte limit"}
            else:
                answer = {"text": text}
        except MemoryError:
            answer = {"error": "the expression used more than its memory limit"}
        except Exception as error:  # noqa: BLE001 - every failure becomes an answer
            answer = {"error": str(error)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
