"""System V IPC is refused inside the sandbox (its segments and queues escape every rlimit), and the seccomp
program does what it says, read by a small BPF interpreter written here from the kernel's definitions."""
from __future__ import annotations

import struct

import pytest

from tests.transforms.execute.test_hostile import FAST, no_sandbox_process_remains, value_of  # noqa: F401 - autouse fixture
from transforms.execute import isolation, syscall_filter

AUDIT_ARCH_X86_64, AUDIT_ARCH_I386, AUDIT_ARCH_AARCH64 = 0xC000003E, 0x40000003, 0xC00000B7
ALLOW, ERRNO_EPERM = 0x7FFF0000, 0x00050001


def run_bpf(program: bytes, nr: int, arch: int) -> int:
    """Classic BPF over struct seccomp_data {int nr; u32 arch; ...}: only the opcodes a filter like this needs."""
    insns = [struct.unpack("=HBBI", program[i:i + 8]) for i in range(0, len(program), 8)]
    data = struct.pack("=iI", nr, arch) + bytes(56)
    acc, pc = 0, 0
    while True:
        code, jt, jf, k = insns[pc]
        if code == 0x20:  # ld word at absolute offset k
            acc = struct.unpack_from("=I", data, k)[0]
            pc += 1
        elif code in (0x15, 0x35):  # jeq / jge against k
            taken = acc == k if code == 0x15 else acc >= k
            pc += 1 + (jt if taken else jf)
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def test_the_filter_refuses_system_v_ipc_and_foreign_abis_and_allows_the_rest():
    program = syscall_filter.program("x86_64")
    assert program
    for nr in (29, 64, 68, 278):  # shmget, semget, msgget, vmsplice (arch/x86/entry/syscalls/syscall_64.tbl)
        assert run_bpf(program, nr, AUDIT_ARCH_X86_64) == ERRNO_EPERM
    for nr in (0, 1, 9, 30, 57, 59, 60, 231, 435):  # read, write, mmap, shmat, fork, execve, exit, ..., clone3
        assert run_bpf(program, nr, AUDIT_ARCH_X86_64) == ALLOW
    assert run_bpf(program, 0x40000000 | 29, AUDIT_ARCH_X86_64) == ERRNO_EPERM  # x32 numbering
    assert run_bpf(program, 117, AUDIT_ARCH_I386) == ERRNO_EPERM  # i386's ipc multiplexer via int 0x80
    assert run_bpf(program, 3, AUDIT_ARCH_I386) == ERRNO_EPERM
    arm = syscall_filter.program("aarch64")
    verdicts = [run_bpf(arm, nr, AUDIT_ARCH_AARCH64) for nr in (75, 186, 190, 194, 63, 64)]
    assert verdicts == [ERRNO_EPERM] * 4 + [ALLOW] * 2
    assert run_bpf(arm, 0, AUDIT_ARCH_X86_64) == ERRNO_EPERM
    assert syscall_filter.program("riscv64") is None


@pytest.mark.skipif(syscall_filter.program() is None, reason="no filter known for this machine")
def test_system_v_segments_queues_and_semaphores_are_refused_inside():
    # A red team held 2 GiB of host memory in detached shmget segments from a sandbox capped at 128 MiB.
    found = value_of(
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "def probe():\n"
        "    out = {}\n"
        "    for name, args in [('shmget', (0, 64 << 20, 0o1000 | 0o600)), ('msgget', (0, 0o1000 | 0o600)),\n"
        "                       ('semget', (0, 1, 0o1000 | 0o600))]:\n"
        "        ctypes.set_errno(0)\n"
        "        out[name] = (getattr(libc, name)(*args), ctypes.get_errno())\n"
        "    out['seccomp'] = open('/proc/self/status').read().split('Seccomp:')[1].split()[0]\n"
        "    return out\n")
    assert found == {"shmget": (-1, 1), "msgget": (-1, 1), "semget": (-1, 1), "seccomp": "2"}


@pytest.mark.skipif(syscall_filter.program() is None, reason="no filter known for this machine")
def test_vmsplice_is_refused_inside():
    """The eighteenth red team: a page vmspliced into a pipe pins its whole transparent huge page, so four pipes
    held 2 GiB of host memory while the process's resident memory was 12 MiB, under any address-space cap."""
    found = value_of(
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "class iovec(ctypes.Structure):\n    _fields_ = [('base', ctypes.c_void_p), ('len', ctypes.c_size_t)]\n"
        "def probe():\n"
        "    r, w = os.pipe()\n"
        "    page = ctypes.create_string_buffer(4096)\n"
        "    vec = iovec(ctypes.addressof(page), 4096)\n"
        "    ctypes.set_errno(0)\n"
        "    return libc.vmsplice(w, ctypes.byref(vec), 1, 0), ctypes.get_errno()\n")
    assert found == (-1, 1)  # EPERM


def test_ordinary_programs_still_run_under_the_filter():
    value = value_of("import subprocess, threading, multiprocessing, mmap, os\n"
                     "def probe():\n"
                     "    t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
                     "    m = mmap.mmap(-1, 1 << 20); m[:3] = b'abc'\n"
                     "    return subprocess.run(['/bin/true']).returncode, bytes(m[:3]), os.cpu_count() > 0\n",
                     isolation.IsolationLimits(timeout_s=10, cpu_s=5, memory_mb=512, max_processes=4))
    assert value == (0, b"abc", True)
