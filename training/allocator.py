"""The training job's memory allocator: TCMalloc, preloaded by starting the job's process once more.

On CPU, glibc's malloc hands every block above its mmap threshold (32 MiB at most) back to the kernel when it
is freed, so the next tensor of that size faults all its pages in again: the embedding's gradient, the bf16 copies
of the weights, every large activation, at every micro-batch. TCMalloc keeps freed memory for reuse. On this
2-core AMX Xeon (2026-12-03, quiet), ``bench/train.py --steps 3 --compile-layers off --no-peaks`` gave 89.9 real
tokens per CPU-second with glibc and 130.9 with TCMalloc preloaded (a profile put 31% of the step in copies, most
of it page faults on fresh blocks, and 25 s of 70 CPU-seconds in the kernel).

An allocator must be there when the process starts (``LD_PRELOAD``), so the job's entry points (``python -m
training.finetune``, ``inverse-instruct train``, each torchrun rank, ``bench/train.py``) call
``restart_with_tcmalloc`` before anything else: the process execs itself with TCMalloc preloaded, keeping its pid,
arguments and environment. In the restarted process ``LD_PRELOAD`` is set back to what it was, so the job's own
subprocesses (compilers, tools) start as they would have. An allocator the user preloads is left alone;
``INVERSE_INSTRUCT_TRAIN_ALLOCATOR=system`` keeps glibc's. Without TCMalloc installed (Debian:
libtcmalloc-minimal4) the job runs as before.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping

from runners.engines.cpu_runtime import (
    ALLOCATOR_MARKERS,
    find_tcmalloc,
    names_an_allocator,
    preload_with,
    runtime_libraries,
)

CHOICE_ENV = "INVERSE_INSTRUCT_TRAIN_ALLOCATOR"  # tcmalloc (default) | system
CHOICES = ("tcmalloc", "system")
# Set only between the exec and the restarted process's start: the LD_PRELOAD to restore ("" = it was unset).
RESTARTED_ENV = "INVERSE_INSTRUCT_PRELOAD_BEFORE"


def restart_environment(environ: Mapping[str, str], tcmalloc: str | None) -> dict[str, str] | None:
    """The environment to exec the job again with (TCMalloc in front of ``LD_PRELOAD``), or None to run on as
    is: TCMalloc not installed, the user's choice (``CHOICE_ENV=system``), an allocator already preloaded, or
    this process is the restarted one."""
    choice = environ.get(CHOICE_ENV, "tcmalloc").strip().lower() or "tcmalloc"
    if choice not in CHOICES:
        raise ValueError(f"{CHOICE_ENV} must be one of {', '.join(CHOICES)}, got {environ[CHOICE_ENV]!r}")
    if choice == "system" or tcmalloc is None or RESTARTED_ENV in environ:
        return None
    before = environ.get("LD_PRELOAD", "")
    if names_an_allocator(before):
        return None
    env = dict(environ)
    env["LD_PRELOAD"] = preload_with(before, tcmalloc, None)  # as vLLM's workers get it (runners.engines.cpu_runtime)
    env[RESTARTED_ENV] = before
    return env


def restart_command(orig_argv: list[str], executable: str) -> list[str]:
    """This process's command line (``sys.orig_argv``: interpreter flags and ``-m module`` kept), run by this
    interpreter."""
    return [executable, *orig_argv[1:]]


def restore_environment(environ=os.environ) -> None:
    """In the restarted process: ``LD_PRELOAD`` as it was before the restart (TCMalloc stays loaded here)."""
    if RESTARTED_ENV not in environ:
        return
    before = environ.pop(RESTARTED_ENV)
    if before:
        environ["LD_PRELOAD"] = before
    else:
        environ.pop("LD_PRELOAD", None)


def restart_with_tcmalloc() -> None:
    """Exec this process again with TCMalloc preloaded (see the module doc), or return when there is nothing to
    do. Call it first thing in a process entry point, never from a function that tests call in-process."""
    try:
        env = restart_environment(os.environ, find_tcmalloc() if sys.platform.startswith("linux") else None)
    except ValueError as err:  # a mistyped choice: one line, as the job's other setting errors
        print(f"inverse-instruct train: error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if env is None:
        restore_environment()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, restart_command(sys.orig_argv, sys.executable), env)


def allocator_in_use() -> str:
    """The allocator library mapped into this process (its file name), or ``system`` (glibc's malloc)."""
    names = [name for name in runtime_libraries(os.getpid()) if name.startswith(ALLOCATOR_MARKERS)]
    return names[0] if names else "system"
