"""GPU-hours of one paper-scale self-play round, from token counts measured on P3 and stated assumptions.

    python -m transforms.selfplay.projection --p3-dir ../shared/data/p3      # SmolLM2 tokenizer

A round: generate ``generated_puzzles`` (100k) puzzles, ``samples_per_prompt`` (64) per prompt, 200 new tokens
each; solve every kept puzzle with ``attempts`` (128) samples of 150 new tokens; fine-tune one epoch on
``training_examples``; evaluate the 228 test puzzles with 100 attempts. The reference samples a fixed number
of tokens (HF ``generate`` with min_length = max_length), so the new-token counts are what it paid; stop strings
make them an upper bound. Prompt tokens are paid once per prompt (vLLM shares the prefill of the n samples of a
request), new tokens once per sample.

Throughput model (assumptions, per GPU, stated in ``Hardware`` and ``ModelShape``):

- prefill: compute bound, ``peak_flops * prefill_mfu / (2 * params)`` tokens/s;
- decode: the least of the compute bound at ``decode_mfu``, the KV-cache bandwidth bound
  ``hbm_bytes_per_s * bandwidth_efficiency / (kv_bytes_per_token * mean_context)`` (each new token reads the
  keys and values of its whole context; GPT-Neo's local-attention layers would read less, ignored here), and a
  per-GPU cap for the scheduler's per-step CPU work that dominates very small models;
- training: ``8 * params`` FLOPs per token (forward, backward and the recomputation of gradient checkpointing,
  which the reference turns on) at ``train_mfu``.

Anchors from the reference README (V100s, HF generate, DeepSpeed ZeRO-2 with CPU offload): "Finetuning on the
1M generated data took about 40 GPU hours for 2.7B (on v100) per epoch"; "Solving the 228 problem testset with
100 attempts using the finetuned 2.7B model took about 4 hours"; data generation "about 2500 GPU hours for 2.7B".
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from typing import Callable, Sequence

from transforms.selfplay.generate import build_generation_prompt, generation_pool
from transforms.selfplay.p3 import P3, load_p3
from transforms.selfplay.preset import load_preset
from transforms.selfplay.solve import build_solve_prefix, build_solve_prompt
from transforms.selfplay.training_text import training_example

CountTokens = Callable[[str], int]


@dataclasses.dataclass(frozen=True)
class TokenShape:
    """Token counts measured with one tokenizer on P3 (means)."""

    tokenizer: str
    generation_prompt: float  # a packed generation prompt
    generation_k: float  # puzzles in it
    solve_prefix: float
    solve_prompt: float  # prefix + puzzle + header, over the training-family puzzles (proxy for generated ones)
    test_prompt: float  # the same over the 228 test puzzles
    training_example: float  # f + g + assert, over the P3 training reference solutions (proxy)


def measure_token_shape(p3: P3, count_tokens: CountTokens, tokenizer_name: str, prompts: int = 16,
                        seed: int = 0) -> TokenShape:
    pool = generation_pool(p3.first_train_instances())
    gen = [build_generation_prompt(pool, count_tokens, prompt_index=i, seed=seed) for i in range(prompts)]
    prefix = build_solve_prefix(p3.train)
    train_prompts = [build_solve_prompt(prefix, p.f).text for p in pool]
    test_prompts = [build_solve_prompt(prefix, p.f).text for p in p3.test]
    examples = [training_example(p.f, "\n" + body) for p in pool for body in p.sol_bodies[:1]]
    mean = lambda texts: statistics.fmean(count_tokens(t) for t in texts)  # noqa: E731
    return TokenShape(tokenizer_name, statistics.fmean(g.tokens for g in gen), statistics.fmean(g.k for g in gen),
                      count_tokens(prefix), mean(train_prompts), mean(test_prompts), mean(examples))


@dataclasses.dataclass(frozen=True)
class Hardware:
    name: str = "A100-80GB"
    peak_flops: float = 312e12  # dense bf16/fp16 tensor-core peak (NVIDIA A100 datasheet)
    hbm_bytes_per_s: float = 2.0e12  # A100-80GB SXM HBM2e (datasheet: 2,039 GB/s)
    prefill_mfu: float = 0.5  # assumption
    decode_mfu: float = 0.5  # assumption
    bandwidth_efficiency: float = 0.6  # assumption: share of HBM bandwidth paged attention sustains
    train_mfu: float = 0.35  # assumption


@dataclasses.dataclass(frozen=True)
class ModelShape:
    name: str
    params: float
    layers: int
    hidden: int
    scheduler_cap_tokens_per_s: float = 50_000.0  # assumption: vLLM step overhead bounds tiny models
    bytes_per_value: int = 2  # fp16/bf16 KV cache

    @property
    def kv_bytes_per_token(self) -> float:
        return 2 * self.layers * self.hidden * self.bytes_per_value  # keys and values, every layer


# GPT-Neo configurations (EleutherAI/gpt-neo-125M and -2.7B config.json: num_layers, hidden_size).
GPT_NEO_125M = ModelShape("gpt-neo-125M", 125e6, 12, 768)
GPT_NEO_2_7B = ModelShape("gpt-neo-2.7B", 2.7e9, 32, 2560)


def _paper(section: str, name: str):
    """A default read from the paper preset when a plan is made (the preset is the one copy of these values)."""
    return dataclasses.field(default_factory=lambda: getattr(getattr(load_preset(), section), name))


@dataclasses.dataclass(frozen=True)
class RoundPlan:
    generated_puzzles: int = _paper("generation", "n_puzzles")
    samples_per_prompt: int = _paper("generation", "samples_per_prompt")
    generation_new_tokens: int = _paper("generation", "gen_tokens")
    kept_fraction: float = 1.0  # share of generated puzzles that pass the filters (1.0 = upper bound)
    attempts: int = _paper("solve", "attempts")
    solve_new_tokens: int = _paper("solve", "max_new_tokens")
    training_examples: int = _paper("training", "cap_later_iterations")
    epochs: int = 1
    test_puzzles: int = 228  # P3's test families (split.json)
    test_attempts: int = _paper("solve", "eval_attempts")


def prefill_tokens_per_s(model: ModelShape, hw: Hardware) -> float:
    return hw.peak_flops * hw.prefill_mfu / (2 * model.params)


def decode_tokens_per_s(model: ModelShape, hw: Hardware, mean_context: float) -> float:
    compute = hw.peak_flops * hw.decode_mfu / (2 * model.params)
    bandwidth = hw.hbm_bytes_per_s * hw.bandwidth_efficiency / (model.kv_bytes_per_token * mean_context)
    return min(compute, bandwidth, model.scheduler_cap_tokens_per_s)


def _phase(prompts: float, prompt_tokens: float, samples: float, new_tokens: float, model: ModelShape,
           hw: Hardware) -> dict[str, float]:
    context = prompt_tokens + new_tokens / 2
    decode_rate = decode_tokens_per_s(model, hw, context)
    seconds = prompts * prompt_tokens / prefill_tokens_per_s(model, hw) + samples * new_tokens / decode_rate
    return {"prompt_tokens": prompts * prompt_tokens, "new_tokens": samples * new_tokens,
            "decode_tokens_per_s": decode_rate, "gpu_hours": seconds / 3600}


def project_round(shape: TokenShape, model: ModelShape, plan: RoundPlan | None = None,
                  hw: Hardware = Hardware()) -> dict[str, dict[str, float]]:
    plan = RoundPlan() if plan is None else plan
    gen_prompts = plan.generated_puzzles / plan.samples_per_prompt
    kept = plan.generated_puzzles * plan.kept_fraction
    phases = {
        "generate": _phase(gen_prompts, shape.generation_prompt, plan.generated_puzzles,
                           plan.generation_new_tokens, model, hw),
        "solve": _phase(kept, shape.solve_prompt, kept * plan.attempts, plan.solve_new_tokens, model, hw),
        "evaluate": _phase(plan.test_puzzles, shape.test_prompt, plan.test_puzzles * plan.test_attempts,
                           plan.solve_new_tokens, model, hw),
    }
    train_tokens = plan.training_examples * shape.training_example * plan.epochs
    phases["fine_tune"] = {"train_tokens": train_tokens,
                           "gpu_hours": 8 * model.params * train_tokens / (hw.peak_flops * hw.train_mfu) / 3600}
    phases["total"] = {"gpu_hours": sum(p["gpu_hours"] for p in phases.values())}
    return phases


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--p3-dir", required=True)
    parser.add_argument("--model", default="smollm2", help="tokenizer to measure with (runners.model_resolution)")
    parser.add_argument("--prompts", type=int, default=16, help="generation prompts to measure")
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    from runners.model_resolution import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.model))
    count = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    shape = measure_token_shape(load_p3(args.p3_dir), count, args.model, prompts=args.prompts)
    report = {"token_shape": dataclasses.asdict(shape), "hardware": dataclasses.asdict(Hardware()),
              "plan": dataclasses.asdict(RoundPlan())}
    for model in (GPT_NEO_125M, GPT_NEO_2_7B):
        report[model.name] = project_round(shape, model)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
