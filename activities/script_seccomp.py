"""The seccomp filter of the `script` sandbox: system calls a snippet never needs answer EPERM.

A deny list in classic BPF, built here (plain data, testable without a kernel) and installed by
`worker/sandbox_runner.py` as its last step before the snippet runs, after the namespaces, the
privilege drop and the resource limits are in place. No library is needed: the program is a list of
`(code, jt, jf, k)` instructions the runner hands to `prctl(PR_SET_SECCOMP)` through ctypes.

What it refuses (EPERM unless said otherwise):
- any call made through another ABI than the machine's own (i386 `int 0x80`, x32 on x86_64), so
  numbers from another table can never slip past the checks below;
- namespaces and mounts: `unshare`, `setns`, `clone` with a CLONE_NEW* flag, `mount`, `umount2`,
  `pivot_root`, `chroot` and the new mount API (`open_tree`, `move_mount`, `fs*`, `mount_setattr`);
  `clone3` answers ENOSYS (its flags sit behind a pointer a filter cannot read) so libc falls back
  to `clone`, which is checked;
- other processes: `ptrace`, `process_vm_readv/writev`, `kcmp`, `pidfd_getfd`,
  `pidfd_send_signal`, and every signal sent to anything but the sandbox itself (`kill`, `tkill`,
  `tgkill`, `rt_sigqueueinfo`, `rt_tgsigqueueinfo` are checked against the runner's pid);
- running programs: `execve`, `execveat` (the limits forbid new processes anyway);
- the kernel: `bpf`, `perf_event_open`, `userfaultfd`, `io_uring_*` (its operations bypass seccomp),
  `keyctl`, `add_key`, `request_key`, `init_module`, `finit_module`, `delete_module`, `kexec_*`,
  `reboot`, `swapon`, `swapoff`, `acct`, `quotactl*`, `syslog`, `personality`, `uselib`,
  `lookup_dcookie`, `fanotify_init`, `open_by_handle_at`, `name_to_handle_at`, `vhangup`, the clock
  setters, `sethostname`, `setdomainname`, and on x86 `iopl`, `ioperm`, `modify_ldt`.
Everything else is allowed: Python itself needs a wide, version-dependent set of calls, so an allow
list would break on the next libc; the calls above are the ones container runtimes also refuse.
"""

from __future__ import annotations

import errno
import os

# Architectures as the kernel's audit layer names them, and the numbers of the calls we check.
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

# name: (x86_64, aarch64); None where the architecture has no such call.
SYSCALLS: dict[str, tuple[int | None, int | None]] = {
    "acct": (163, 89),
    "add_key": (248, 217),
    "adjtimex": (159, 171),
    "bpf": (321, 280),
    "chroot": (161, 51),
    "clock_adjtime": (305, 266),
    "clock_settime": (227, 112),
    "clone": (56, 220),
    "clone3": (435, 435),
    "delete_module": (176, 106),
    "execve": (59, 221),
    "execveat": (322, 281),
    "fanotify_init": (300, 262),
    "finit_module": (313, 273),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fsopen": (430, 430),
    "fspick": (433, 433),
    "init_module": (175, 105),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "io_uring_setup": (425, 425),
    "ioperm": (173, None),
    "iopl": (172, None),
    "kcmp": (312, 272),
    "kexec_file_load": (320, 294),
    "kexec_load": (246, 104),
    "keyctl": (250, 219),
    "kill": (62, 129),
    "lookup_dcookie": (212, 18),
    "modify_ldt": (154, None),
    "mount": (165, 40),
    "mount_setattr": (442, 442),
    "move_mount": (429, 429),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    "open_tree": (428, 428),
    "perf_event_open": (298, 241),
    "personality": (135, 92),
    "pidfd_getfd": (438, 438),
    "pidfd_send_signal": (424, 424),
    "pivot_root": (155, 41),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "ptrace": (101, 117),
    "quotactl": (179, 60),
    "quotactl_fd": (443, 443),
    "reboot": (169, 142),
    "request_key": (249, 218),
    "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240),
    "setdomainname": (171, 162),
    "sethostname": (170, 161),
    "setns": (308, 268),
    "settimeofday": (164, 170),
    "swapoff": (168, 225),
    "swapon": (167, 224),
    "syslog": (103, 116),
    "tgkill": (234, 131),
    "tkill": (200, 130),
    "umount2": (166, 39),
    "unshare": (272, 97),
    "uselib": (134, None),
    "userfaultfd": (323, 282),
    "vhangup": (153, 58),
}

DENIED = tuple(
    sorted(
        set(SYSCALLS) - {"clone", "clone3", "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"}
    )
)
# Calls whose first argument is the process (group) a signal goes to.
SIGNAL_CALLS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
CLONE_NEW_FLAGS = 0x7E020000

# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
LD_ABS_W = 0x20  # BPF_LD | BPF_W | BPF_ABS
JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
RET = 0x06  # BPF_RET | BPF_K
ALLOW = 0x7FFF0000  # SECCOMP_RET_ALLOW
RET_ERRNO = 0x00050000  # SECCOMP_RET_ERRNO | errno
DENY = RET_ERRNO | errno.EPERM
NOT_AVAILABLE = RET_ERRNO | errno.ENOSYS
# Offsets in struct seccomp_data: nr, arch, instruction pointer, then six 64-bit args (little endian,
# so an argument's low 32 bits — all that an int, a pid or the clone flags use — sit first).
NR_OFFSET = 0
ARCH_OFFSET = 4
ARG0_OFFSET = 16

Instruction = tuple[int, int, int, int]


class UnsupportedArchitecture(Exception):
    pass


def _stmt(code: int, k: int) -> Instruction:
    return (code, 0, 0, k)


def _jump(code: int, k: int, jt: int, jf: int) -> Instruction:
    return (code, jt, jf, k)


def ensure_supported(machine: str | None = None) -> str:
    """The machine's architecture, if this module has a filter for it."""
    machine = machine or os.uname().machine
    if machine not in AUDIT_ARCH:
        raise UnsupportedArchitecture(
            f"the script sandbox has no seccomp filter for the {machine} architecture "
            f"(supported: {', '.join(AUDIT_ARCH)}), so it refuses to run scripts"
        )
    return machine


def seccomp_program(sandbox_pid: int, machine: str | None = None) -> list[Instruction]:
    """The filter for a sandbox process `sandbox_pid` on `machine` (default: this one)."""
    machine = ensure_supported(machine)
    column = list(AUDIT_ARCH).index(machine)

    def number(name: str) -> int | None:
        return SYSCALLS[name][column]

    program = [
        _stmt(LD_ABS_W, ARCH_OFFSET),
        _jump(JEQ, AUDIT_ARCH[machine], 1, 0),
        _stmt(RET, DENY),
        _stmt(LD_ABS_W, NR_OFFSET),
    ]
    if machine == "x86_64":
        program += [_jump(JGE, X32_SYSCALL_BIT, 0, 1), _stmt(RET, DENY)]
    for name in DENIED:
        if (nr := number(name)) is not None:
            program += [_jump(JEQ, nr, 0, 1), _stmt(RET, DENY)]
    program += [_jump(JEQ, _required(number("clone3")), 0, 1), _stmt(RET, NOT_AVAILABLE)]
    # clone: allowed (RLIMIT_NPROC still forbids new processes) unless it asks for a namespace.
    program += [
        _jump(JEQ, _required(number("clone")), 0, 4),
        _stmt(LD_ABS_W, ARG0_OFFSET),
        _jump(JSET, CLONE_NEW_FLAGS, 0, 1),
        _stmt(RET, DENY),
        _stmt(RET, ALLOW),
    ]
    for name in SIGNAL_CALLS:
        # kill() may also name the sandbox's own process group (0, or -pid: it leads its session).
        targets = [sandbox_pid] + ([0, -sandbox_pid & 0xFFFFFFFF] if name == "kill" else [])
        body = [_stmt(LD_ABS_W, ARG0_OFFSET)]
        body += [_jump(JEQ, target, len(targets) - i, 0) for i, target in enumerate(targets)]
        body += [_stmt(RET, DENY), _stmt(RET, ALLOW)]
        program += [_jump(JEQ, _required(number(name)), 0, len(body)), *body]
    program.append(_stmt(RET, ALLOW))
    return program


def _required(nr: int | None) -> int:
    assert nr is not None  # clone, clone3 and the signal calls exist on every supported architecture
    return nr
