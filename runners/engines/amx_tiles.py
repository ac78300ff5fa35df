"""A batch-invariant bf16 linear layer on AMX tiles (``csrc/amx_tiles.cpp``), built with torch's C++ extension
loader on first use and cached by torch (``TORCH_EXTENSIONS_DIR``, default ``~/.cache/torch_extensions``).

Every output row is reduced over the inputs in one fixed order (32 inputs per tile step, in order, into a float32
tile), whatever the number of rows, so a row's result cannot depend on the rows computed beside it: batch
invariance by construction, where oneDNN's kernels change with the row count. The weight is repacked once into the
layout the tile instruction reads (``pack_weight``); each thread takes whole 32-feature column blocks, so threads
never split a row's sum either. Requires a C++ compiler with AMX intrinsics (g++ 11 or later) the first time.
"""
from __future__ import annotations

import functools
import os

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc", "amx_tiles.cpp")
# The weight shapes the kernel takes: whole 16-feature by 32-input blocks (SmolLM2, Qwen and Llama shapes all are).
FEATURE_BLOCK, INPUT_BLOCK = 16, 32
# -fopenmp: ATen's parallel_for runs its threads through OpenMP pragmas in its headers (torch's own libgomp)
CFLAGS = ("-O3", "-mamx-tile", "-mamx-bf16", "-mavx512f", "-mavx512bf16", "-mavx512vl", "-fopenmp")


class AmxTilesUnavailable(RuntimeError):
    """The kernel could not be built or loaded here (no C++ compiler, or one without AMX intrinsics)."""


@functools.cache
def extension():
    """The built kernel module (``pack_weight``, ``linear_into``); builds it the first time on this machine."""
    from torch.utils.cpp_extension import load

    from runners.engines.vllm_plugin import request_amx_tile_state

    # Linux gives a process the tile state only when asked; without it the first tile instruction is SIGILL (oneDNN
    # asks for itself, so this mattered only where the kernel ran before any oneDNN AMX call).
    request_amx_tile_state()
    try:
        return load(name="inverse_instruct_amx_tiles", sources=[SOURCE], extra_cflags=list(CFLAGS), verbose=False)
    except (OSError, RuntimeError, ImportError) as err:
        raise AmxTilesUnavailable(
            f"the AMX tile kernel ({SOURCE}) could not be built: {type(err).__name__}: {err}. It needs a C++ "
            "compiler with AMX intrinsics (g++ 11 or later); or run vLLM with --cpu-amx full or off") from err


def fits(weight) -> bool:
    """Whether the kernel takes this weight: 2-D bf16 in whole 16 x 32 blocks."""
    import torch

    return (weight.dim() == 2 and weight.dtype == torch.bfloat16 and weight.shape[0] % FEATURE_BLOCK == 0
            and weight.shape[1] % INPUT_BLOCK == 0)


def pack_weight(weight):
    """``weight`` ([features, inputs], bf16) in the kernel's layout."""
    return extension().pack_weight(weight)


def linear(rows, packed, bias=None, out=None):
    """``rows @ weight.T + bias`` for 2-D bf16 ``rows`` (unit column stride), from ``pack_weight``'s layout; a row's
    result does not depend on the other rows. ``bias`` of any float dtype is added in float32."""
    import torch

    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    if out is None:
        out = torch.empty((rows.shape[0], packed.shape[0] * FEATURE_BLOCK), dtype=rows.dtype)
    extension().linear_into(out, rows, packed, bias)
    return out


if __name__ == "__main__":  # `make venv` builds it once, so that no engine start waits for the compiler
    import sys

    try:
        print(f"AMX tile kernel built: {extension().__file__}")
    except AmxTilesUnavailable as err:
        sys.exit(f"{err} (engines use oneDNN's 32-row blocks instead: the same results, slower)")
