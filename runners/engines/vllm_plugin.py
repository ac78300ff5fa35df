"""A vLLM general plugin (entry point ``vllm.general_plugins`` in setup.py): vLLM runs ``register`` in every process
of its own (its engine core, its workers) before it builds the model. It acts only when the engine asks for it,
through ``NO_AMX_ENV`` in the environment it starts vLLM with: then vLLM's CPU kernels run without AMX in that
process too, as they do in ours (``without_amx_kernels``). Light on purpose: it imports only torch."""
from __future__ import annotations

import os

NO_AMX_ENV = "INVERSE_INSTRUCT_VLLM_NO_AMX"
# The most oneDNN may use when AMX is off: AVX-512 with bf16 dot products, the ISA the exact-judging tests were made
# on. oneDNN reads ONEDNN_MAX_CPU_ISA once, when it starts, so the engine's environment carries it from the start.
ONEDNN_WITHOUT_AMX = "AVX512_CORE_BF16"


def without_amx_kernels() -> None:
    """vLLM's CPU kernels without AMX, in this process, before vLLM builds its model: its attention backend and its
    packed linear layers choose AMX from ``torch.cpu._is_amx_tile_supported()``, and their results then depend on
    the shape of the batch (a prompt's log-probs moved by 0.013 with the prompts beside it, its top-5 by 0.3, and
    greedy re-runs differed). A no-op on CPUs without AMX."""
    import torch

    if torch.cpu._is_amx_tile_supported():
        torch.cpu._is_amx_tile_supported = lambda: False
        os.environ.setdefault("ONEDNN_MAX_CPU_ISA", ONEDNN_WITHOUT_AMX)  # for a oneDNN not started yet


def register() -> None:
    if os.environ.get(NO_AMX_ENV) == "1":
        without_amx_kernels()
