"""``EngineConfig``: everything needed to build an engine, as plain data that pickles into every Beam worker."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from runners.model_resolution import DEFAULT_MODEL

ENGINE_NAMES = ("vllm", "transformers", "fake")
VLLM_SCORE_METHODS = ("allowed_token_ids", "logprob_token_ids", "prompt_logprobs")
TOP_LOGPROBS = 5


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """Everything needed to build an engine; plain data so it pickles into every Beam worker."""

    model: str = DEFAULT_MODEL
    model_cache: str | None = None
    engine: str = "vllm"
    dtype: str = "bfloat16"
    max_model_len: int = 4096
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool | None = None  # None: True on CPU (skips a long compile), False on GPU
    kv_cache_gb: float = 2.0  # VLLM_CPU_KVCACHE_SPACE on CPU
    max_num_seqs: int | None = None
    seed: int = 0
    torch_threads: int | None = None  # transformers engine; None = torch's default (all cores)
    device: str = "auto"  # transformers engine: auto | cpu | cuda
    # transformers engine: prompts per padded forward pass when scoring. 1 makes every score independent of its
    # batch neighbours (a GEMM's rounding depends on its shape), so re-runs are byte-identical; 8 is ~1.4x faster.
    score_batch_size: int = 1
    # transformers engine. "eager" upcasts the attention softmax to float32 and, unlike torch SDPA in bf16
    # (up to 0.25 nats apart on SmolLM2), gives the same log-probs whether or not a prompt is left-padded.
    attn_implementation: str = "eager"
    vllm_score_method: str = "logprob_token_ids"
    vllm_engine_args: tuple[tuple[str, Any], ...] = ()  # extra vllm.LLM keyword arguments

    def __post_init__(self):
        if self.engine not in ENGINE_NAMES:
            raise ValueError(f"engine must be one of {ENGINE_NAMES}, got {self.engine!r}")
        if self.vllm_score_method not in VLLM_SCORE_METHODS:
            raise ValueError(f"vllm_score_method must be one of {VLLM_SCORE_METHODS}, got {self.vllm_score_method!r}")

    @property
    def identity(self) -> str:
        """What makes two configs load the same model; used to name the shared engine."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
