"""The seccomp filter bwrap loads before the sandbox's interpreter starts: System V IPC is refused.

Why: the sandbox's private IPC namespace starts with the kernel's default limits (``shmmax``/``shmall`` near
2**64, 4,096 segments), and neither shared-memory segments nor message queues count against any rlimit. A red team
held 2 GiB of host memory in detached ``shmget`` segments from a sandbox capped at 128 MiB of address space, and
320 MiB of unreclaimable kernel memory in message queues (whose per-queue limit the sandbox could raise through
its own ``/proc/sys/kernel/msgmnb``). The ``*get`` calls are the only way to a segment, queue or semaphore set,
so refusing them (``EPERM``) closes all three; plain Python never needs them. ``vmsplice`` is refused too: a page
spliced into a pipe pins the whole transparent huge page it belongs to, so four pipes held 2 GiB while the process's
resident memory was 12 MiB, under any address-space cap (the eighteenth red team).

The filter is classic BPF over ``struct seccomp_data`` (``nr`` at offset 0, ``arch`` at 4). Every syscall of
another ABI than the native one (i386 through ``int 0x80``, x32 numbers) is refused too, since their numbers
differ (i386 reaches System V IPC through the ``ipc`` multiplexer).
"""
from __future__ import annotations

import errno
import os
import platform
import struct

# BPF opcodes (linux/bpf_common.h) and seccomp return values (linux/seccomp.h)
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
X32_SYSCALL_BIT = 0x40000000

# machine -> (AUDIT_ARCH_*, {syscall name: number}) for the calls refused
REFUSED_SYSCALLS = {
    "x86_64": (0xC000003E, {"shmget": 29, "semget": 64, "msgget": 68, "vmsplice": 278}),
    "aarch64": (0xC00000B7, {"vmsplice": 75, "msgget": 186, "semget": 190, "shmget": 194}),
}


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter for ``machine`` (``platform.machine()``), or None where its syscall numbers are not known."""
    machine = machine or platform.machine()
    if machine not in REFUSED_SYSCALLS:
        return None
    audit_arch, refused = REFUSED_SYSCALLS[machine]
    numbers = sorted(refused.values())
    refuse = _RET_K, 0, 0, RET_ERRNO | errno.EPERM
    # 0: arch; 1: native? else refuse; 2: nr; 3: x32 numbers (x86_64 only) refused; then one test per number
    body = [(_LD_W_ABS, 0, 0, 4)]
    checks = [(_JGE_K, None, 0, X32_SYSCALL_BIT)] if machine == "x86_64" else []
    checks += [(_JEQ_K, None, 0, n) for n in numbers]
    # layout: [ld arch][jeq arch][ld nr][checks...][ret allow][ret refuse]
    after_arch = 1 + len(checks) + 1  # instructions between the arch test and "ret refuse": ld nr, checks, allow
    body.append((_JEQ_K, 0, after_arch, audit_arch))
    body.append((_LD_W_ABS, 0, 0, 0))
    for i, (code, _, jf, k) in enumerate(checks):
        body.append((code, len(checks) - i, jf, k))  # jump past the remaining checks and "ret allow"
    body.append((_RET_K, 0, 0, RET_ALLOW))
    body.append(refuse)
    return b"".join(_insn(*insn) for insn in body)


def program_fd(machine: str | None = None) -> int | None:
    """A file descriptor holding the filter, positioned at its start, for ``bwrap --seccomp FD`` (which reads it to
    the end); None where no filter is known for this machine. The caller closes it."""
    code = program(machine)
    if code is None:
        return None
    fd = os.memfd_create("sandbox-seccomp", os.MFD_CLOEXEC)
    os.write(fd, code)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
