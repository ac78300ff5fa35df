"""Which precision a training run computes in: bf16 mixed precision where the hardware runs bf16 matmuls fast,
fp32 otherwise.

bf16 here is autocast mixed precision: fp32 master weights, gradients, optimizer state and loss; matmuls and
attention run in bf16 inside ``torch.autocast`` (the HF Trainer's ``bf16=True``, which accelerate turns into
``torch.autocast(device_type="cpu", dtype=torch.bfloat16)`` on CPU as well as on CUDA). Autocast was chosen over
bf16 weights with fp32 master copies by measurement: on an AVX-512 BF16 CPU both take the same CPU time for a
forward+backward of the 135M model (``python bench/train.py --probe-modes``), and autocast keeps checkpoints,
resume and the saved model in fp32.

Which CPUs count as fast at bf16 is ``runners.hardware``'s answer (AMX or AVX-512 BF16), the same one the
engines' ``dtype: auto`` follows; elsewhere ``auto`` keeps fp32 (``bf16`` still forces it).
"""
from __future__ import annotations

import dataclasses

from runners.hardware import CPU_BF16_FLAGS, TORCH_CPU_PROBES, cpu_bf16_feature, cpu_flags  # noqa: F401 (re-exported)


@dataclasses.dataclass(frozen=True)
class Precision:
    bf16: bool
    reason: str

    @property
    def name(self) -> str:
        return "bf16" if self.bf16 else "fp32"


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
