"""Which of vLLM-CPU's AMX kernels make a prompt's log-probs depend on its batch, and what each costs.

Each path runs in its own process (oneDNN reads its ISA cap once), builds ``vllm.LLM`` with the engine's own
arguments (``llm_kwargs``: eager, bf16, prefix caching on), then:
- judges one prompt alone and beside 1, 3, 7 and 15 others (``max_tokens=1``, top-20 log-probs) and reports the
  largest log-prob difference from alone;
- judges a long prompt cold, again (prefix-cache hit) and beside 5 others, and reports the largest difference;
- generates 48 greedy tokens alone and beside 7 others, and says whether the text is the same;
- times judging 64 prompts and generating 32 x 64 tokens.

Paths (on a CPU with AMX; elsewhere they are all vLLM's own kernels):
- ``off``: no AMX (``--cpu-amx off``); ``full``: vLLM's own choice of every kernel (``--cpu-amx full``, raw vLLM);
- ``invariant``: the default (``--cpu-amx invariant``: oneDNN in 32-row blocks, vLLM's AMX attention);
- ``small-linears``: only vLLM's packed AMX kernel for small linears (oneDNN capped, attention without AMX);
- ``onednn``: only oneDNN's AMX matmuls, unblocked (vLLM's own kernels without AMX);
- ``invariant-small-linears``: the default with vLLM's packed AMX kernel back for the small linears.

    python bench/amx_paths.py --paths off,small-linears,onednn,invariant,full --json bench/results/amx_paths.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PATHS = ("off", "small-linears", "onednn", "invariant", "invariant-small-linears", "full")
TARGET = ("Write a Python function that returns the nth Fibonacci number using iteration. Is this instruction clear? "
          "Answer Yes or No:")
OTHERS = [f"Explain step {i} of sorting a list of {i * 7} integers with merge sort, and give an example in code."
          * (1 + i % 3) for i in range(15)]
LONG_TARGET = "def merge_sort(values):\n    if len(values) <= 1:\n        return values\n" * 25 + TARGET


def set_path(path: str) -> None:
    """Before vLLM builds its model, in this process (the engine server's way: vLLM's engine core in-process)."""
    import torch

    from runners.engines import vllm_plugin

    if path in ("off", "invariant", "full"):
        vllm_plugin.use_amx(path)
        return
    if path == "small-linears":
        os.environ["ONEDNN_MAX_CPU_ISA"] = vllm_plugin.ONEDNN_WITHOUT_AMX
        vllm_plugin.request_amx_tile_state()  # oneDNN, capped, will not ask for it
        import vllm.v1.attention.backends.cpu_attn as cpu_attn

        real_isa = cpu_attn._get_attn_isa

        def isa_without_amx(*args, **kwargs):
            saved, torch.cpu._is_amx_tile_supported = torch.cpu._is_amx_tile_supported, lambda: False
            try:
                return real_isa(*args, **kwargs)
            finally:
                torch.cpu._is_amx_tile_supported = saved

        cpu_attn._get_attn_isa = isa_without_amx
        return
    if path == "invariant-small-linears":
        vllm_plugin.use_amx("invariant")
        from vllm.model_executor.layers import utils

        utils.check_cpu_sgl_kernel = vllm_plugin._VLLM_ORIGINALS.get("check_cpu_sgl_kernel",
                                                                     utils.check_cpu_sgl_kernel)
        return
    if path == "onednn":
        vllm_plugin._hide_amx_from_vllm()
        return
    raise ValueError(path)


def one_path(path: str) -> dict:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    set_path(path)
    from vllm import LLM, SamplingParams

    from runners.engines.config import EngineConfig
    from runners.engines.vllm_engine import llm_kwargs
    from runners.model_resolution import resolve_model

    config = EngineConfig(engine="vllm")
    llm = LLM(**llm_kwargs(config, resolve_model(config.model, config.model_cache)))
    judge = SamplingParams(max_tokens=1, logprobs=20, temperature=0)

    def logprobs(prompts: list[str], index: int = 0) -> dict[int, float]:
        first = llm.generate(prompts, judge, use_tqdm=False)[index].outputs[0].logprobs[0]
        return {int(token): entry.logprob for token, entry in first.items()}

    def largest_difference(a: dict[int, float], b: dict[int, float]) -> float:
        common = set(a) & set(b)
        assert common
        return max(abs(a[token] - b[token]) for token in common)

    alone = logprobs([TARGET])
    by_batch = {n: largest_difference(alone, logprobs([TARGET] + OTHERS[:n - 1])) for n in (2, 4, 8, 16)}
    judge_prompts = [other + f" #{i}" for i in range(5) for other in OTHERS][:64]
    # 64 prompts: a prefill step of about 2,000 tokens, where the invariant mode's large one-call sizes run
    by_batch[64] = largest_difference(alone, logprobs([TARGET] + judge_prompts[:63]))
    prefill_tokens = sum(len(llm.get_tokenizer()(prompt).input_ids) for prompt in [TARGET] + judge_prompts[:63])
    llm.reset_prefix_cache()
    cold = logprobs([LONG_TARGET])
    prefix = max(largest_difference(cold, logprobs([LONG_TARGET])),
                 largest_difference(cold, logprobs(OTHERS[:5] + [LONG_TARGET], index=5)))
    greedy = SamplingParams(max_tokens=48, temperature=0)
    greedy_alone = llm.generate([TARGET], greedy, use_tqdm=False)[0].outputs[0].token_ids
    greedy_batched = llm.generate([TARGET] + OTHERS[:7], greedy, use_tqdm=False)[0].outputs[0].token_ids
    start = time.perf_counter()
    llm.generate(judge_prompts, judge, use_tqdm=False)
    judge_s = time.perf_counter() - start
    start = time.perf_counter()
    llm.generate(judge_prompts[:32], SamplingParams(max_tokens=64, temperature=0, ignore_eos=True), use_tqdm=False)
    generate_s = time.perf_counter() - start
    from runners.engines.vllm_plugin import one_call_sizes_found, tiles_alike_found

    return {"path": path, "max_logprob_diff_by_batch_size": by_batch, "batch_64_prompt_tokens": prefill_tokens,
            "one_call_sizes": one_call_sizes_found(), "tiles_round_alike": tiles_alike_found(),
            "max_logprob_diff_prefix_cache": prefix,
            "greedy_same_in_batch": list(greedy_alone) == list(greedy_batched),
            "judge_prompts_per_s": round(64 / judge_s, 2), "generate_tokens_per_s": round(32 * 64 / generate_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated, of: {', '.join(PATHS)}")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--one", choices=PATHS, help=argparse.SUPPRESS)  # internal: one path, in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_path(args.one)))
        return
    from runners.hardware import describe_machine

    results = []
    for path in args.paths.split(","):
        if path not in PATHS:
            parser.error(f"unknown path {path!r}; choose from {PATHS}")
        done = subprocess.run([sys.executable, __file__, "--one", path], capture_output=True, text=True)
        if done.returncode != 0:
            result = {"path": path, "error": f"exit {done.returncode}", "stderr_tail": done.stderr[-2000:]}
        else:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": describe_machine(), "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
