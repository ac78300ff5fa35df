"""Whether a training run compiles its decoder layers (``compile_layers``), decided from measurements.

``compile_layers: auto`` (the default) compiles where it was measured to pay: a single process on a CPU with
native bf16 (AMX or AVX-512 BF16), training enough examples to earn back the compilation. On the Zen 4 host
(AVX-512 BF16) compiled layers gave 1.25-1.32x the tokens per CPU-second of eager, bf16 and fp32 alike, and 30
steps of varied shapes compiled 2 graphs and none after the first step; on the AVX2-only host they gave 0.98x
(README, "Measured here"). The first step pays about 20-25 CPU-seconds of compilation: at ~83 eager and ~107
compiled tokens per CPU-second that is earned back after ~9,000 tokens (~100 Code Alpaca examples), so runs of
fewer than ``AUTO_MIN_EXAMPLES`` stay eager (smoke runs, tests). Untested here, so ``auto`` stays eager: CUDA,
several processes (DDP/FSDP), gradient checkpointing. Without a C++ compiler (inductor builds its CPU kernels with
one) ``auto`` stays eager too. ``true`` and ``false`` force either way.
"""
from __future__ import annotations

import dataclasses

AUTO_MIN_EXAMPLES = 1000  # ~10x the break-even above, so the compilation is at most ~10% of a run's CPU


@dataclasses.dataclass(frozen=True)
class CompileChoice:
    compile: bool
    reason: str


def require_setting(setting: object) -> None:
    """``ValueError`` unless ``setting`` is True, False or "auto" (not 1 or 1.0, which equal True)."""
    if not (type(setting) is bool or setting == "auto"):
        raise ValueError(f"compile_layers must be true, false or auto, got {setting!r}")


def cpp_compiler() -> str | None:
    """The C++ compiler torch's inductor would build CPU kernels with ($CXX, else g++), or None if not on PATH."""
    import os
    import shutil

    return shutil.which(os.environ.get("CXX") or "g++")


def choose_compile_layers(setting: bool | str, *, examples: int, cuda: bool, cpu_bf16: str | None,
                          world_size: int, gradient_checkpointing: bool, compiler: str | None) -> CompileChoice:
    """``setting`` True/False forces; ``auto`` compiles a single-process CPU run on native bf16 hardware that
    trains at least ``AUTO_MIN_EXAMPLES`` examples, when a C++ compiler (``compiler``) is there to build it."""
    require_setting(setting)
    if setting is True:
        return CompileChoice(True, "compile_layers: true")
    if setting is False:
        return CompileChoice(False, "compile_layers: false")
    if cuda:
        return CompileChoice(False, "auto: eager on CUDA (compiled layers not measured there)")
    if cpu_bf16 is None:
        return CompileChoice(False, "auto: eager on a CPU without native bf16 (compiled layers measured 0.98x there)")
    if world_size > 1:
        return CompileChoice(False, f"auto: eager with {world_size} processes (compiled layers untested with DDP/FSDP)")
    if gradient_checkpointing:
        return CompileChoice(False, "auto: eager with gradient checkpointing (untested with compiled layers)")
    if compiler is None:
        return CompileChoice(False, "auto: eager, no C++ compiler for torch's inductor ($CXX or g++ on PATH)")
    if examples < AUTO_MIN_EXAMPLES:
        return CompileChoice(False, f"auto: eager for {examples} examples (compiling pays from about "
                                    f"{AUTO_MIN_EXAMPLES})")
    return CompileChoice(True, f"auto: the CPU has {cpu_bf16} and the stage trains {examples} examples")
