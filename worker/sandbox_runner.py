"""The process that runs one `script` step's Python snippet; `activities/script.py` starts it.

Standard library only, and self-contained: the parent runs it as
`python -I -c <this file's source> <config JSON>` with an empty environment and a fresh temporary
working folder, so it works the same from a source checkout and an installed package.

What the snippet sees: a variable `input` holding the step's input (any JSON value); the step's
output is whatever the snippet leaves in a variable named `result` (null when it sets none), and it
must be JSON-serialisable. `print()` output becomes `stdout` log lines, writes to `sys.stderr`
become `stderr` log lines.

Before the snippet runs, the runner, in this order: reads `{"seccomp": [...], "code": ...,
"input": ...}` from stdin (the filter program comes from `activities/script_seccomp.py`); imports
a set of common standard-library modules (after the privilege drop the interpreter's own files may
not be readable); enters namespaces of its own (`enter_namespaces`): a mount namespace — directly
as root, inside a new user namespace otherwise — where its working folder is bind-mounted over
every world-writable folder (/tmp, /var/tmp, /dev/shm, /run/lock) and the engine's data folder is
covered by an empty read-only tmpfs, and, when asked, a network namespace (each best effort,
reported back); when started as root, drops to uid/gid `nobody` (otherwise clears the capabilities
the user namespace gave it); sets umask 077; lowers its resource limits: RLIMIT_AS (memory),
RLIMIT_CPU (CPU seconds; SIGXCPU at the limit, SIGKILL one second later), RLIMIT_NPROC = 0 (no
processes or threads, so nothing escapes the process group the parent kills), RLIMIT_NOFILE,
RLIMIT_FSIZE and RLIMIT_CORE; and last installs the seccomp filter, which refuses the system calls
a snippet never needs (namespaces, mounts, ptrace, kernel keys, BPF, modules, exec, signals to other
processes, …). Doing this here rather than in a `preexec_fn` keeps Python code out of the window
between fork and exec in the multi-threaded worker, and lets `unshare` and `mount` run before the
privilege drop. Wall-clock time is enforced by the parent.

Protocol: everything the runner says goes to the original stdout as one JSON object per line,
while fd 1 itself is pointed at stderr, so nothing the snippet writes can pass for a frame:

    {"type": "sandbox", "uid": 65534, "network_isolated": true, "network_note": null,
     "tmp_private": true, "tmp_note": null, "seccomp": true}
    {"type": "log", "stream": "stdout" | "stderr", "line": "..."}
    {"type": "truncated", "lines": 123}               # log lines dropped beyond the caps
    {"type": "result", "value": ...}
    {"type": "error", "kind": "user_code" | "memory" | "cpu" | "output" | "not_json" | "setup",
     "error_type": "...", "message": "...", "traceback": "..."}
"""

from __future__ import annotations

import builtins
import io
import json
import linecache
import os
import signal
import sys
import traceback
from typing import Any

SCRIPT_FILENAME = "<script>"
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
# Every folder any user may write to on a usual Linux system: inside the sandbox each one is the
# step's own working folder, which the parent removes after the step.
SHARED_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")

# Imported while the interpreter's files are still readable; a snippet running as `nobody` can
# use these even when the Python installation is private to root.
PRELOADED_MODULES = (
    "_strptime", "base64", "bisect", "calendar", "collections", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "encodings.ascii", "encodings.idna", "encodings.latin_1",
    "encodings.utf_16", "enum", "fractions", "functools", "hashlib", "heapq", "html", "itertools",
    "math", "operator", "pprint", "random", "re", "statistics", "string", "textwrap", "time",
    "typing", "unicodedata", "urllib.parse", "uuid", "zoneinfo",
)  # fmt: skip


class Channel:
    """The framed protocol stream, with the caps on log lines applied at the source."""

    def __init__(self, fd: int, config: dict[str, Any]) -> None:
        self.fd = fd
        self.max_lines: int = config["max_log_lines"]
        self.max_bytes: int = config["max_log_bytes"]
        self.max_line_chars: int = config["max_line_chars"]
        self.lines = 0
        self.bytes = 0
        self.dropped = 0

    def send(self, frame: dict[str, Any]) -> None:
        self.send_raw(json.dumps(frame).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def log(self, stream: str, line: str) -> None:
        if len(line) > self.max_line_chars:
            line = line[: self.max_line_chars] + " …[line cut]"
        size = len(line.encode("utf-8", "replace"))
        if self.lines >= self.max_lines or self.bytes + size > self.max_bytes:
            self.dropped += 1
            return
        self.lines += 1
        self.bytes += size
        # Lone surrogates from odd decoding would not survive the parent's UTF-8 round trip.
        self.send({"type": "log", "stream": stream, "line": line.encode("utf-8", "replace").decode()})


class LineWriter(io.TextIOBase):
    """`sys.stdout`/`sys.stderr` for the snippet: every complete line becomes one log frame."""

    def __init__(self, channel: Channel, stream: str) -> None:
        self.channel = channel
        self.stream = stream
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self.pending + text).split("\n")
        self.pending = lines.pop()
        for line in lines:
            self.channel.log(self.stream, line)
        if len(self.pending) > self.channel.max_line_chars:
            self.channel.log(self.stream, self.pending)
            self.pending = ""
        return len(text)

    def finish(self) -> None:
        if self.pending:
            self.channel.log(self.stream, self.pending)
            self.pending = ""


class Kernel:
    """The few libc calls the runner needs, raising OSError like the `os` module does."""

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.libc = ctypes.CDLL(None, use_errno=True)

    def check(self, result: int, what: str) -> None:
        if result != 0:
            code = self.ctypes.get_errno()
            raise OSError(code, f"{what}: {os.strerror(code)}")

    def unshare(self, flags: int) -> None:
        self.check(self.libc.unshare(flags), "unshare")

    def mount(
        self, source: str | None, target: str, fstype: str | None, flags: int, data: str | None
    ) -> None:
        c = self.ctypes
        encoded = [value.encode() if value is not None else None for value in (source, target, fstype, data)]
        result = self.libc.mount(encoded[0], encoded[1], encoded[2], c.c_ulong(flags), encoded[3])
        self.check(result, f"mount {target}")

    def drop_capabilities(self) -> None:
        """Clear every capability (a new user namespace grants all of them inside it)."""
        c = self.ctypes
        header = (c.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
        data = (c.c_uint32 * 6)()  # two {effective, permitted, inheritable} sets, all zero
        self.check(self.libc.capset(header, data), "capset")

    def install_seccomp(self, program: list[list[int]]) -> None:
        c = self.ctypes

        class SockFilter(c.Structure):
            _fields_ = [("code", c.c_ushort), ("jt", c.c_ubyte), ("jf", c.c_ubyte), ("k", c.c_uint32)]

        class SockFprog(c.Structure):
            _fields_ = [("len", c.c_ushort), ("filter", c.POINTER(SockFilter))]

        instructions = (SockFilter * len(program))(*(SockFilter(*insn) for insn in program))
        fprog = SockFprog(len(program), instructions)
        # No new privileges: required to install a filter without CAP_SYS_ADMIN, and a setuid
        # program could not regain anything anyway.
        self.check(
            self.libc.prctl(PR_SET_NO_NEW_PRIVS, c.c_ulong(1), c.c_ulong(0), c.c_ulong(0), c.c_ulong(0)),
            "prctl",
        )
        result = self.libc.prctl(
            PR_SET_SECCOMP, c.c_ulong(SECCOMP_MODE_FILTER), c.byref(fprog), c.c_ulong(0), c.c_ulong(0)
        )
        self.check(result, "seccomp")


def enter_namespaces(kernel: Kernel, as_root: bool, isolate_network: bool) -> tuple[bool, bool, str | None]:
    """unshare a mount namespace (and a network one when asked); answer (mount, network, note).

    As root this needs no user namespace; otherwise a new user namespace is what allows it. Each
    part is best effort: the caller reports what could not be done.
    """
    base = CLONE_NEWNS | (0 if as_root else CLONE_NEWUSER)
    attempts = [base | CLONE_NEWNET, base] if isolate_network else [base]
    notes = []
    for flags in attempts:
        try:
            kernel.unshare(flags)
            return True, bool(flags & CLONE_NEWNET), "; ".join(notes) or None
        except OSError as exc:
            notes.append(f"unshare failed: {exc.strerror}")
    return False, False, notes[-1]


def private_dirs(kernel: Kernel, hidden: list[str]) -> None:
    """In the new mount namespace: the working folder over every shared writable folder, the
    engine's data folder covered by an empty read-only tmpfs; nothing propagates back out."""
    kernel.mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    for target in SHARED_WRITABLE_DIRS:
        # "." is the working folder: once /tmp is covered its own path may no longer resolve.
        if os.path.isdir(target) and not os.path.islink(target):
            kernel.mount(".", target, None, MS_BIND, None)
    for target in hidden:
        if os.path.isdir(target):
            flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
            kernel.mount("none", target, "tmpfs", flags, "size=4k,mode=0500")
    os.chdir("/tmp")


def isolate(config: dict[str, Any], seccomp: list[list[int]], channel: Channel) -> None:
    """Namespaces, private folders, privilege drop, limits, seccomp — in the only order that works."""
    import resource

    kernel = Kernel()
    as_root = os.geteuid() == 0
    real_uid = os.getuid()
    in_mount_ns, network_isolated, note = enter_namespaces(kernel, as_root, config["isolate_network"])
    network_note = None
    if config["isolate_network"] and not network_isolated:
        network_note = f"{note or 'no network namespace'}; the script keeps network access"
    tmp_note = None
    if in_mount_ns:
        private_dirs(kernel, config.get("hidden_dirs") or [])
        os.environ.update(TMPDIR="/tmp", HOME="/tmp")
    else:
        tmp_note = f"{note}; /tmp, /var/tmp and /dev/shm are shared with other steps"

    uid = config.get("drop_to_uid")
    if uid is not None and as_root:
        os.setgroups([])
        os.setgid(config["drop_to_gid"])
        os.setuid(uid)
    elif in_mount_ns:
        kernel.drop_capabilities()
    os.umask(0o077)

    memory = config["memory_mb"] * 1024 * 1024
    cpu = config["cpu_seconds"]
    limits = {
        resource.RLIMIT_AS: (memory, memory),
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_NPROC: (0, 0),
        resource.RLIMIT_NOFILE: (config["open_files"], config["open_files"]),
        resource.RLIMIT_FSIZE: (config["file_size_mb"] * 1024 * 1024,) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, (soft, hard) in limits.items():
        current_soft, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)  # only ever lower a limit
        resource.setrlimit(which, (min(soft, hard), hard))

    kernel.install_seccomp(seccomp)  # last: it refuses the calls made above
    channel.send(
        {
            "type": "sandbox",
            "uid": os.getuid() if as_root else real_uid,
            "network_isolated": network_isolated,
            "network_note": network_note,
            "tmp_private": in_mount_ns,
            "tmp_note": tmp_note,
            "seccomp": True,
        }
    )


def user_traceback(exc: BaseException) -> str:
    """The traceback reduced to the snippet's own lines."""
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc))
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == SCRIPT_FILENAME]
    return "".join(
        ["Traceback (most recent call last):\n"]
        + traceback.format_list(frames)
        + traceback.format_exception_only(type(exc), exc)
    )


def error_frame(kind: str, exc: BaseException | None = None, message: str = "") -> dict[str, Any]:
    return {
        "type": "error",
        "kind": kind,
        "error_type": type(exc).__name__ if exc else None,
        "message": message or (str(exc) if exc else ""),
        "traceback": user_traceback(exc) if exc else None,
    }


def run(code: str, value: Any, channel: Channel, max_output_bytes: int) -> dict[str, Any]:
    """Execute the snippet; answer the final frame (result or error)."""
    # Frames for the out-of-memory and out-of-CPU paths are built now: then there may be no
    # memory or time left to build them.
    memory_frame = json.dumps({"type": "error", "kind": "memory", "message": "MemoryError"}).encode() + b"\n"
    cpu_frame = json.dumps({"type": "error", "kind": "cpu", "message": "SIGXCPU"}).encode() + b"\n"

    def on_cpu_limit(signum: int, frame: object) -> None:
        channel.send_raw(cpu_frame)
        os._exit(3)

    signal.signal(signal.SIGXCPU, on_cpu_limit)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized file write raises OSError instead

    linecache.cache[SCRIPT_FILENAME] = (len(code), None, code.splitlines(True), SCRIPT_FILENAME)
    namespace: dict[str, Any] = {"__name__": "__script__", "__builtins__": builtins, "input": value}
    reserve = bytearray(512 * 1024)  # freed on MemoryError so reporting it has room to work
    try:
        exec(compile(code, SCRIPT_FILENAME, "exec"), namespace)
    except MemoryError:
        del reserve
        namespace.clear()
        channel.send_raw(memory_frame)
        return {}
    except SystemExit as exc:
        if exc.code not in (None, 0):
            return error_frame("user_code", exc, f"the script called exit({exc.code!r})")
    except BaseException as exc:
        return error_frame("user_code", exc)
    finally:
        for writer in (sys.stdout, sys.stderr):
            if isinstance(writer, LineWriter):
                writer.finish()

    try:
        encoded = json.dumps(namespace.get("result"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return error_frame("not_json", exc, f"result is not JSON-serialisable: {exc}")
    except MemoryError:
        del reserve
        namespace.clear()
        channel.send_raw(memory_frame)
        return {}
    size = len(encoded.encode())
    if size > max_output_bytes:
        return {"type": "error", "kind": "output", "message": f"result is {size} bytes", "size": size}
    return {"type": "result", "raw": encoded}


def main() -> int:
    config = json.loads(sys.argv[1])
    channel = Channel(os.dup(1), config)
    os.dup2(2, 1)  # raw writes to fd 1 land in stderr, never among the frames
    try:
        payload = json.loads(sys.stdin.buffer.read())
        for name in PRELOADED_MODULES:
            __import__(name)
        isolate(config, payload["seccomp"], channel)
    except Exception as exc:
        channel.send(error_frame("setup", exc, f"{type(exc).__name__}: {exc}"))
        return 2
    sys.stdin = io.StringIO()
    sys.stdout = LineWriter(channel, "stdout")
    sys.stderr = LineWriter(channel, "stderr")

    final = run(payload.get("code", ""), payload.get("input"), channel, config["max_output_bytes"])
    if channel.dropped:
        channel.send({"type": "truncated", "lines": channel.dropped})
    if final.get("type") == "result":
        # The result is already JSON text: splice it in rather than encoding it twice.
        channel.send_raw(b'{"type": "result", "value": ' + final["raw"].encode() + b"}\n")
    elif final:
        channel.send(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
