"""Which precision a training run computes in: bf16 mixed precision where the hardware runs bf16 matmuls fast,
fp32 otherwise.

bf16 here is autocast mixed precision: fp32 master weights, gradients, optimizer state and loss; matmuls and
attention run in bf16 inside ``torch.autocast`` (the HF Trainer's ``bf16=True``, which accelerate turns into
``torch.autocast(device_type="cpu", dtype=torch.bfloat16)`` on CPU as well as on CUDA). Autocast was chosen over
bf16 weights with fp32 master copies by measurement: on an AVX-512 BF16 CPU both take the same CPU time for a
forward+backward of the 135M model (``python bench/train.py --probe-modes``), and autocast keeps checkpoints,
resume and the saved model in fp32.

A CPU counts as fast at bf16 when it has AMX tiles (Intel Sapphire Rapids and later) or AVX-512 BF16 (Intel
Cooper Lake, AMD Zen 4 and later): oneDNN then runs bf16 GEMMs natively. Without either, bf16 is emulated and
slower than fp32, so ``auto`` keeps fp32 there (``bf16`` still forces it).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

# /proc/cpuinfo flag names, best first.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# torch's own CPU feature probes (cpuinfo library); private, so each is optional.
TORCH_CPU_PROBES = (("amx_bf16", "_is_amx_tile_supported"), ("avx512_bf16", "_is_avx512_bf16_supported"))


@dataclasses.dataclass(frozen=True)
class Precision:
    bf16: bool
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"


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


def choose_precision(requested: str, *, cuda: bool, cuda_bf16: bool, cpu_bf16: str | None) -> Precision:
    """``auto``: bf16 on a CUDA device that supports it, or on a CPU with fast bf16; fp32 otherwise."""
    if requested == "fp32":
        return Precision(False, "precision: fp32 requested")
    if requested == "bf16":
        fast = cuda_bf16 if cuda else cpu_bf16 is not None
        return Precision(True, "precision: bf16 requested" + ("" if fast else " (the device has no fast bf16)"))
    if requested != "auto":
        raise ValueError(f"unknown precision {requested!r}")
    if cuda:
        return Precision(cuda_bf16, "auto: CUDA " + ("supports bf16" if cuda_bf16 else "device without bf16"))
    if cpu_bf16 is not None:
        return Precision(True, f"auto: the CPU has {cpu_bf16}")
    return Precision(False, "auto: the CPU has neither AMX nor AVX-512 BF16")


def resolve_precision(requested: str) -> Precision:
    """``choose_precision`` for the device this process trains on."""
    import torch

    cuda = torch.cuda.is_available()
    return choose_precision(
        requested, cuda=cuda, cuda_bf16=cuda and torch.cuda.is_bf16_supported(),
        cpu_bf16=None if cuda else cpu_bf16_feature(),
    )
