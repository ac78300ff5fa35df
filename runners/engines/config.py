"""``EngineConfig``: everything needed to build an engine, as plain data that pickles into every Beam worker."""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from runners.engines.vllm_plugin import CPU_AMX_MODES
from runners.model_resolution import DEFAULT_MODEL

ENGINE_NAMES = ("vllm", "transformers", "fake")
VLLM_SCORE_METHODS = ("allowed_token_ids", "logprob_token_ids", "prompt_logprobs")
TOP_LOGPROBS = 5
# Where vLLM's engine runs: "server" is one process of ours with vLLM's engine core in it (runners.engines.
# server; 1.7x faster end to end on a 2-core CPU), "spawned" is vLLM's own EngineCore and worker processes
# (needed for tensor parallelism; on GPUs its engine core overlaps scheduling with the model). "auto": server on
# CPU with one worker, spawned otherwise.
VLLM_HOSTS = ("auto", "server", "spawned")


DTYPES = ("auto", "bfloat16", "float16", "half", "float32", "float")


def resolve_dtype(dtype: str, *, gpu: bool | None = None) -> str:
    """``auto``: bfloat16 on a GPU (``gpu``; None asks torch) or on a CPU with fast bf16 (AMX or AVX-512 BF16,
    ``runners.hardware``); float32 on other CPUs, where bf16 is emulated (vLLM-CPU generated 4x and judged 7x
    slower in bf16 than in float32 on an AVX2-only CPU). Any other value is returned as it is."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if dtype != "auto":
        return dtype
    if gpu is None:
        from runners.engines.common import cuda_available

        gpu = cuda_available()
    if gpu:
        return "bfloat16"
    from runners.hardware import cpu_bf16_feature

    return "bfloat16" if cpu_bf16_feature() else "float32"


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """Everything needed to build an engine; plain data so it pickles into every Beam worker."""

    model: str = DEFAULT_MODEL
    model_cache: str | None = None
    engine: str = "vllm"
    dtype: str = "auto"  # auto: resolve_dtype (bf16 on GPUs and on CPUs with fast bf16, else float32)
    max_model_len: int = 4096
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    # None: True on CPU (skips a long compile; a job launch may choose False from its size: runners.options.
    # choose_compilation), False on GPU
    enforce_eager: bool | None = None
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
    # vLLM on CPU: preload TCMalloc and Intel OpenMP into its workers (runners.engines.cpu_runtime). Off by
    # default: no measurable gain on this 2-core machine.
    cpu_runtime_preload: bool = False
    vllm_host: str = "auto"  # VLLM_HOSTS
    # vLLM on a CPU with AMX: which of its AMX kernels run (runners.engines.vllm_plugin.CPU_AMX_MODES). "invariant"
    # (default): AMX matmuls in blocks of rows, so a prompt's log-probs do not depend on its batch neighbours;
    # "full": all of vLLM's AMX kernels (faster, batch-dependent scores); "off": none.
    cpu_amx: str = "invariant"

    def vllm_host_for(self, gpu: bool | None = None) -> str:
        """``vllm_host`` made concrete for workers with a GPU or not (``gpu``; None asks torch)."""
        if self.vllm_host != "auto":
            return self.vllm_host
        if gpu is None:
            from runners.engines.common import cuda_available

            gpu = cuda_available()
        return "spawned" if gpu or self.tensor_parallel_size > 1 else "server"

    def __post_init__(self):
        if self.engine not in ENGINE_NAMES:
            raise ValueError(f"engine must be one of {ENGINE_NAMES}, got {self.engine!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.vllm_score_method not in VLLM_SCORE_METHODS:
            raise ValueError(f"vllm_score_method must be one of {VLLM_SCORE_METHODS}, got {self.vllm_score_method!r}")
        if self.vllm_host not in VLLM_HOSTS:
            raise ValueError(f"vllm_host must be one of {VLLM_HOSTS}, got {self.vllm_host!r}")
        if self.cpu_amx not in CPU_AMX_MODES:
            raise ValueError(f"cpu_amx must be one of {CPU_AMX_MODES}, got {self.cpu_amx!r}")

    def resolved(self, gpu: bool | None = None) -> "EngineConfig":
        """This config with ``dtype`` made concrete (``resolve_dtype``) for workers with a GPU or not (``gpu``;
        None: the transformers engine's explicit ``device``, else this machine). The fake engine computes
        nothing, so it stays as it is (and torch stays unloaded)."""
        if self.engine == "fake":
            return self
        if gpu is None and self.engine == "transformers" and self.device != "auto":
            gpu = self.device.startswith("cuda")
        dtype = resolve_dtype(self.dtype, gpu=gpu)
        return self if dtype == self.dtype else dataclasses.replace(self, dtype=dtype)

    @property
    def identity(self) -> str:
        """What makes two configs load the same model; used to name the shared engine."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True, default=str)
