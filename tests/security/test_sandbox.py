"""The script sandbox holds against what a hostile snippet would try: real snippets, real sandbox
processes, real kernel answers. The filter's logic is also checked instruction by instruction."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import struct
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activities.base import StepContext, StepRequest
from activities.script import handle_script
from activities.script_seccomp import (
    ALLOW,
    ARCH_OFFSET,
    ARG0_OFFSET,
    AUDIT_ARCH,
    DENIED,
    DENY,
    JEQ,
    JGE,
    JSET,
    LD_ABS_W,
    NOT_AVAILABLE,
    NR_OFFSET,
    RET,
    SYSCALLS,
    UnsupportedArchitecture,
    seccomp_program,
)
from rte.config import get_settings
from rte.errors import EngineError
from rte.store import Store

ROOT = Path(__file__).resolve().parents[2]
RUNNING_AS_ROOT = os.geteuid() == 0
NOBODY = 65534
HEADERS = {  # the kernel's own syscall tables, from the linux-libc-dev package
    "x86_64": (Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"), r"#define __NR_(\w+)\s+(\d+)"),
    "aarch64": (Path("/usr/include/asm-generic/unistd.h"), r"#define __NR(?:3264)?_(\w+)\s+(\d+)"),
}
CALL_TEMPLATE = """
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
answer = {call}
result = errno.errorcode.get(ctypes.get_errno(), "?") if answer == -1 else f"returned {{answer}}"
"""


class NoConnections:
    async def resolve(self, connection_id: str) -> Any:
        raise AssertionError("a script step resolves no connection")


def new_ctx() -> StepContext:
    request = StepRequest(
        execution_id="exec-1", step_path="main/probe", kind="script", item_index=None, connection=None
    )
    return StepContext(request=request, attempt=1, connections=NoConnections())


async def run(code: str, **params: Any) -> tuple[Any, StepContext]:
    ctx = new_ctx()
    return await handle_script({"code": code, **params}, ctx), ctx


def warnings(ctx: StepContext) -> list[str]:
    return [entry.message for entry in ctx.logs if entry.level == "warning"]


def require_private_tmp(ctx: StepContext) -> None:
    shared = [message for message in warnings(ctx) if "shared with other steps" in message]
    if shared:
        assert not RUNNING_AS_ROOT, f"a root worker must give scripts a private /tmp: {shared}"
        pytest.skip(f"this machine allows no user namespace for a non-root worker: {shared[0]}")


def kernel_numbers(machine: str) -> dict[str, int]:
    header, pattern = HEADERS[machine]
    if not header.exists():
        pytest.skip(f"{header} is not installed (apt-get install linux-libc-dev)")
    return {name: int(number) for name, number in re.findall(pattern, header.read_text())}


@pytest.fixture
def same_user_process() -> Iterator[int]:
    """A process of the user scripts run as (nobody under a root worker): one they must not signal."""
    user = {"user": NOBODY, "group": NOBODY, "extra_groups": []} if RUNNING_AS_ROOT else {}
    process = subprocess.Popen(["sleep", "120"], **user)  # type: ignore[call-overload]
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def outside_data_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A data folder outside /tmp (where the private /tmp would hide it anyway), made world-readable
    on purpose, with the worker's settings pointing at it."""
    data = ROOT / f".rte-sandbox-test-{secrets.token_hex(4)}"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    monkeypatch.setenv("RTE_DATA_DIR", str(data))
    get_settings.cache_clear()
    try:
        yield data
    finally:
        monkeypatch.delenv("RTE_DATA_DIR")
        get_settings.cache_clear()
        shutil.rmtree(data)


# --- a private /tmp ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "folder", [path for path in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock") if os.path.isdir(path)]
)
async def test_a_16_mb_file_in_a_shared_folder_does_not_survive_the_step(folder: str) -> None:
    path = f"{folder}/rte-probe-{secrets.token_hex(4)}"
    code = f"open({path!r}, 'wb').write(b'x' * (16 * 1024 * 1024))\nimport os\nresult = os.path.getsize({path!r})"
    written, ctx = await run(code)
    require_private_tmp(ctx)

    assert written == 16 * 1024 * 1024  # the script could write it…
    assert not os.path.exists(path)  # …but not where the worker or anyone else would find it
    seen_by_next_step, _ = await run(f"import os\nresult = os.path.exists({path!r})")
    assert seen_by_next_step is False


async def test_steps_running_at_the_same_time_do_not_see_each_others_tmp() -> None:
    writer_ctx = new_ctx()
    code = "open('/tmp/marker', 'w').write('mine')\nprint('written')\nimport time\ntime.sleep(60)"
    writer = asyncio.create_task(handle_script({"code": code}, writer_ctx))
    try:
        for _ in range(500):  # until the first step has written its file, 10 s at most
            if any(entry.message == "written" for entry in writer_ctx.logs):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"the first step never wrote its file: {writer_ctx.logs}")
        seen, ctx = await run("import os\nresult = sorted(os.listdir('/tmp'))")
    finally:
        writer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writer
    require_private_tmp(ctx)
    assert seen == []


async def test_tmpdir_and_home_are_the_private_folder() -> None:
    seen, ctx = await run("import os\nresult = [os.environ['TMPDIR'], os.environ['HOME'], os.getcwd()]")
    require_private_tmp(ctx)
    assert seen == ["/tmp", "/tmp", "/tmp"]


# --- the seccomp filter, in real sandboxes ---------------------------------------------------


def header_call(name: str, *args: str) -> str:
    number = kernel_numbers(os.uname().machine)[name] if os.uname().machine in HEADERS else None
    if number is None:
        pytest.skip(f"no syscall table for {os.uname().machine}")
    return f"libc.syscall({number}, {', '.join(args)})"


REFUSED_CALLS = {
    "unshare(CLONE_NEWUSER)": lambda: "libc.unshare(0x10000000)",
    "unshare(CLONE_NEWNS)": lambda: "libc.unshare(0x20000)",
    "unshare(CLONE_NEWNET)": lambda: "libc.unshare(0x40000000)",
    "clone(CLONE_NEWUSER)": lambda: header_call("clone", "0x10000000 | 17", "0", "0", "0", "0"),
    "setns(net)": lambda: "libc.setns(os.open('/proc/self/ns/net', os.O_RDONLY), 0)",
    "mount(tmpfs)": lambda: "libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)",
    "umount2(/tmp)": lambda: "libc.umount2(b'/tmp', 2)",
    "ptrace(TRACEME)": lambda: "libc.ptrace(0, 0, None, None)",
    "process_vm_readv(self)": lambda: header_call("process_vm_readv", "os.getpid()", "0", "0", "0", "0", "0"),
    "chroot": lambda: "libc.chroot(b'/tmp')",
    "pivot_root": lambda: header_call("pivot_root", "b'/tmp'", "b'/tmp'"),
    "personality(query)": lambda: "libc.personality(0xFFFFFFFF)",
    "keyctl(get session keyring)": lambda: header_call("keyctl", "0", "-3", "0"),
    "add_key": lambda: header_call("add_key", "b'user'", "b'probe'", "b'x'", "1", "-3"),
    "bpf": lambda: header_call("bpf", "5", "0", "0"),
    "perf_event_open": lambda: header_call("perf_event_open", "0", "0", "-1", "-1", "0"),
    "userfaultfd(user mode only)": lambda: header_call("userfaultfd", "1"),
    "io_uring_setup": lambda: header_call("io_uring_setup", "1", "0"),
    "swapon": lambda: "libc.swapon(b'/tmp/swap', 0)",
    "init_module": lambda: header_call("init_module", "0", "0", "b''"),
    "kexec_load": lambda: header_call("kexec_load", "0", "0", "0", "0"),
    "execve(/bin/true)": lambda: "libc.execv(b'/bin/true', (ctypes.c_char_p * 2)(b'true', None))",
}


@pytest.mark.parametrize("name", list(REFUSED_CALLS))
async def test_calls_a_snippet_never_needs_are_refused_with_eperm(name: str) -> None:
    answer, _ = await run(CALL_TEMPLATE.format(call=REFUSED_CALLS[name]()))
    assert answer == "EPERM"


async def test_clone3_answers_enosys_so_libc_falls_back_to_the_checked_clone() -> None:
    answer, _ = await run(CALL_TEMPLATE.format(call=header_call("clone3", "0", "0")))
    assert answer == "ENOSYS"


async def test_a_script_cannot_signal_a_process_of_its_own_user(same_user_process: int) -> None:
    code = f"import os\ntry:\n    os.kill({same_user_process}, 0)\n    result = 'signalled'\nexcept OSError as exc:\n    result = exc.strerror"
    answer, _ = await run(code)
    assert answer == "Operation not permitted"


async def test_the_sandbox_runs_filtered_without_privileges() -> None:
    code = "result = {k: v.strip() for k, v in (line.split(':', 1) for line in open('/proc/self/status')) if k in ('Seccomp', 'NoNewPrivs', 'CapEff')}"
    status, ctx = await run(code)
    assert status == {"Seccomp": "2", "NoNewPrivs": "1", "CapEff": "0000000000000000"}
    assert "seccomp on" in ctx.logs[-1].message


async def test_ordinary_snippets_still_work_under_the_filter() -> None:
    code = """
import datetime, decimal, hashlib, json, math, os, re, signal, time, uuid
caught = []
signal.signal(signal.SIGUSR1, lambda signum, frame: caught.append(signum))
os.kill(os.getpid(), signal.SIGUSR1)   # signals to itself are allowed
signal.raise_signal(signal.SIGUSR1)    # tgkill on itself too
time.sleep(0.01)
with open("notes.txt", "w") as handle:
    handle.write(json.dumps({"n": 3}))
result = {
    "caught": len(caught),
    "read_back": json.load(open("notes.txt")),
    "hash": hashlib.sha256(b"x").hexdigest()[:8],
    "sqrt": math.isqrt(input),
    "when": datetime.date(2024, 2, 29).isoformat(),
    "money": str(decimal.Decimal("1.10") * 3),
    "match": re.findall(r"\\d+", "a1b22"),
    "uuid": len(str(uuid.uuid4())),
}
"""
    answer, _ = await run(code, input=49)
    assert answer == {
        "caught": 2,
        "read_back": {"n": 3},
        "hash": "2d711642",
        "sqrt": 7,
        "when": "2024-02-29",
        "money": "3.30",
        "match": ["1", "22"],
        "uuid": 36,
    }


# --- the data folder --------------------------------------------------------------------------


async def test_the_data_folder_is_hidden_from_scripts_whatever_its_mode(outside_data_dir: Path) -> None:
    (outside_data_dir / "rte.db").write_text("every execution's data")
    os.chmod(outside_data_dir / "rte.db", 0o644)  # wide open: only the mount namespace protects it
    code = f"""
try:
    result = open({str(outside_data_dir / "rte.db")!r}).read()
except OSError as exc:
    result = type(exc).__name__
"""
    answer, ctx = await run(code)
    require_private_tmp(ctx)
    assert answer in ("FileNotFoundError", "PermissionError")


async def test_a_store_in_a_wide_folder_made_by_someone_else_is_unreadable_to_scripts(
    outside_data_dir: Path,
) -> None:
    async with await Store.open(get_settings()) as store:
        await store.logs.add_many(
            [{"execution_id": "e", "step_path": "s", "level": "info", "message": "m", "source": "engine"}]
        )
    code = f"""
import os
answers = {{}}
for name in ("rte.db", "rte.db-wal", "rte.db-shm"):
    try:
        answers[name] = len(open(os.path.join({str(outside_data_dir)!r}, name), "rb").read())
    except OSError as exc:
        answers[name] = type(exc).__name__
result = answers
"""
    answer, _ = await run(code)
    assert set(answer.values()) <= {"FileNotFoundError", "PermissionError"}, answer


# --- a worker that is not root ----------------------------------------------------------------

NON_ROOT_UID = 4242
NON_ROOT_WORKER = """
import asyncio, ctypes, json, sys
from activities.base import StepContext, StepRequest
from activities.script import handle_script

class NoConnections:
    async def resolve(self, connection_id):
        raise AssertionError(connection_id)

async def main():
    answers = {}
    for name, code in json.loads(sys.argv[1]).items():
        request = StepRequest(execution_id="e", step_path="s", kind="script", item_index=None, connection=None)
        ctx = StepContext(request=request, attempt=1, connections=NoConnections())
        try:
            answers[name] = await handle_script({"code": code}, ctx)
        except Exception as exc:
            answers[name] = f"{type(exc).__name__}: {exc}"
        answers[name + " (logs)"] = [entry.message for entry in ctx.logs]
    # Where no user namespace stands between them, this is what keeps scripts out of /proc/<worker>.
    answers["worker dumpable"] = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
    print(json.dumps(answers))

asyncio.run(main())
"""


def interpreter_for_another_user() -> str:
    """This interpreter, or a system one of the same version, if a non-root user can run it with
    the project's packages; skips the test otherwise."""
    site = sysconfig.get_paths()["purelib"]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        try:  # as that user: root may run what the user may not (e.g. a venv under /root)
            probe = subprocess.run(
                [candidate, "-c", "import pydantic, temporalio, jq"],
                env={"PYTHONPATH": f"{ROOT}:{site}", "PATH": "/usr/bin:/bin"},
                user=NON_ROOT_UID,
                group=NON_ROOT_UID,
                extra_groups=[],
                capture_output=True,
                check=False,
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return candidate
    pytest.skip(f"no {version} that uid {NON_ROOT_UID} can run with the project's packages")


@pytest.mark.skipif(
    not RUNNING_AS_ROOT, reason="the suite itself runs as non-root: every test above is that case"
)
def test_a_non_root_worker_gets_a_private_tmp_the_filter_and_a_protected_environment(
    outside_data_dir: Path,
) -> None:
    python = interpreter_for_another_user()
    os.chmod(outside_data_dir, 0o777)  # the worker's own data: readable by its uid, as it would be
    (outside_data_dir / "secret.key").write_text("the worker's key")
    leftover = f"/tmp/rte-probe-{secrets.token_hex(4)}"
    victim = subprocess.Popen(["sleep", "120"], user=NON_ROOT_UID, group=NON_ROOT_UID, extra_groups=[])
    probes = {
        "uid": "import os\nresult = os.getuid()",
        "tmp": f"open({leftover!r}, 'w').write('x')\nresult = 'written'",
        "unshare": CALL_TEMPLATE.format(call="libc.unshare(0x10000000)"),
        "ptrace": CALL_TEMPLATE.format(call="libc.ptrace(0, 0, None, None)"),
        "status": "result = {k: v.strip() for k, v in (line.split(':', 1) for line in open('/proc/self/status')) if k in ('Seccomp', 'NoNewPrivs', 'CapEff')}",
        "worker environment": "import os\ntry:\n    result = open(f'/proc/{os.getppid()}/environ').read()\nexcept OSError as exc:\n    result = type(exc).__name__",
        "signal": f"import os\ntry:\n    os.kill({victim.pid}, 0)\n    result = 'signalled'\nexcept OSError as exc:\n    result = exc.strerror",
        "data folder": f"try:\n    result = open({str(outside_data_dir / 'secret.key')!r}).read()\nexcept OSError as exc:\n    result = type(exc).__name__",
    }
    try:
        finished = subprocess.run(
            [python, "-c", NON_ROOT_WORKER, json.dumps(probes)],
            env={
                "PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}",
                "PATH": "/usr/bin:/bin",
                "RTE_DATA_DIR": str(outside_data_dir),
                "RTE_WORKER_SECRET_PROBE": "do-not-leak",
            },
            user=NON_ROOT_UID,
            group=NON_ROOT_UID,
            extra_groups=[],
            cwd=tempfile.gettempdir(),
            capture_output=True,
            timeout=120,
            check=False,
        )
    finally:
        victim.kill()
        victim.wait()
    assert finished.returncode == 0, finished.stderr.decode()[-2000:]
    answers = json.loads(finished.stdout)
    logs = "\n".join(answers["uid (logs)"])
    if "shared with other steps" in logs:
        pytest.skip(f"this machine allows no user namespace for a non-root user: {logs}")

    assert f"as uid {NON_ROOT_UID}, private /tmp, seccomp on" in logs
    assert answers["tmp"] == "written" and not os.path.exists(leftover)
    assert answers["unshare"] == "EPERM" and answers["ptrace"] == "EPERM"
    assert answers["status"] == {"Seccomp": "2", "NoNewPrivs": "1", "CapEff": "0000000000000000"}
    assert answers["worker environment"] == "PermissionError"
    assert answers["worker dumpable"] == 0
    assert answers["signal"] == "Operation not permitted"
    assert answers["data folder"] in ("FileNotFoundError", "PermissionError")


# --- the filter program, instruction by instruction --------------------------------------------


def decide(program: list[tuple[int, int, int, int]], arch: int, nr: int, *args: int) -> int:
    """Run a classic-BPF seccomp program on one system call, as the kernel would."""
    data = struct.pack(
        "<IIQ6Q", nr & 0xFFFFFFFF, arch, 0, *[a & (2**64 - 1) for a in (*args, 0, 0, 0, 0, 0, 0)[:6]]
    )
    accumulator, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        if code == LD_ABS_W:
            (accumulator,) = struct.unpack_from("<I", data, k)
            pc += 1
        elif code in (JEQ, JGE, JSET):
            taken = {JEQ: accumulator == k, JGE: accumulator >= k, JSET: bool(accumulator & k)}[code]
            pc += 1 + (jt if taken else jf)
        elif code == RET:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


@pytest.mark.parametrize("machine", list(AUDIT_ARCH))
def test_the_filter_table_matches_the_kernel_headers(machine: str) -> None:
    kernel = kernel_numbers(machine)
    column = list(AUDIT_ARCH).index(machine)
    assert {name: numbers[column] for name, numbers in SYSCALLS.items()} == {
        name: kernel.get(name) for name in SYSCALLS
    }


@pytest.mark.parametrize("machine", list(AUDIT_ARCH))
def test_the_filter_decides_as_documented(machine: str) -> None:
    kernel = kernel_numbers(machine)
    arch, pid = AUDIT_ARCH[machine], 4321
    program = seccomp_program(pid, machine)
    loads = {offset for code, _, _, offset in program if code == LD_ABS_W}
    assert loads == {NR_OFFSET, ARCH_OFFSET, ARG0_OFFSET}

    for name in DENIED:
        if name in kernel:
            assert decide(program, arch, kernel[name]) == DENY, name
    for name in ("read", "write", "openat", "close", "mmap", "munmap", "futex", "exit_group", "getpid"):
        assert decide(program, arch, kernel[name]) == ALLOW, name
    assert decide(program, arch, kernel["clone3"]) == NOT_AVAILABLE
    thread_flags = 0x3D0F00  # what pthread_create passes
    assert decide(program, arch, kernel["clone"], thread_flags) == ALLOW
    for flag in (0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000, 0x40000000):
        assert decide(program, arch, kernel["clone"], 17 | flag) == DENY, hex(flag)
    for target in (pid, 0, -pid):
        assert decide(program, arch, kernel["kill"], target, 9) == ALLOW, target
    for target in (pid + 1, 1, -1, -(pid + 1)):
        assert decide(program, arch, kernel["kill"], target, 9) == DENY, target
    for name in ("tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "tkill"):
        assert decide(program, arch, kernel[name], pid, pid, 10) == ALLOW, name
        assert decide(program, arch, kernel[name], pid + 1, pid + 1, 10) == DENY, name
    other_arch = 0x40000003 if machine == "x86_64" else 0x40000028  # i386, arm (32-bit)
    assert decide(program, other_arch, kernel["read"]) == DENY
    if machine == "x86_64":
        assert decide(program, arch, 0x40000000 | kernel["read"]) == DENY  # the x32 ABI


def test_an_architecture_without_a_filter_refuses_to_run_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnsupportedArchitecture, match="riscv64"):
        seccomp_program(1, "riscv64")
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "6", "v", "riscv64")))
    with pytest.raises(EngineError, match="no seccomp filter for the riscv64 architecture"):
        asyncio.run(handle_script({"code": "result = 1"}, new_ctx()))
