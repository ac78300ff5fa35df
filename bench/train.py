"""Fine-tune the embedded SmolLM2 for a few steps on CPU; report tokens/s, padding fraction and peak memory.

    python bench/train.py [--steps 4] [--per-device-batch 4] [--global-batch 8] [--max-length 1024]

Data: the real Code Alpaca pairs in ``../shared/data`` when present (as ``original`` training examples written
by the project's shard writer), else synthetic pairs. It runs the real job (``training.finetune.run``, one
process, the paper's Adafactor/linear schedule) and prints a JSON report, including a GPU-hours projection for
the paper's data (90K generated + 110K original pairs, 1 + 2 epochs) at global batch 512.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from schemas.records import RecordKind  # noqa: E402
from transforms.io.parquet import write_shards  # noqa: E402
from transforms.io.training_examples import training_example  # noqa: E402

SHARED = Path(os.environ.get("INVERSE_INSTRUCT_SHARED", REPO.parent / "shared"))

# Projection assumptions (stated in the report).
PAPER_GENERATED, PAPER_ORIGINAL = 90_363, 111_183  # pairs (reference doc); stage 1: 1 epoch, stage 2: 2 epochs
A100_BF16_PEAK_FLOPS = 312e12  # dense bf16 tensor-core peak
ASSUMED_MFU = 0.40  # typical for FSDP full-shard 7B fine-tuning with seq 1024 on A100
PAPER_MODEL_PARAMS = 6.7e9  # DeepSeek-Coder-6.7B (the paper's CL-7B is 6.7B too)
ASSUMED_TOKENS_PER_EXAMPLE = 550  # evol-codealpaca prompt+response incl. the paper template, mean (assumed)


def examples(limit: int) -> tuple[list[dict], str]:
    path = SHARED / "data" / "code_alpaca_2k.json"
    rows = []
    if path.is_file():
        for i, item in enumerate(json.loads(path.read_text(encoding="utf-8"))[:limit]):
            instruction = item["instruction"] + (("\n" + item["input"]) if item.get("input") else "")
            if not item.get("output", "").strip():
                continue
            rows.append(training_example(
                source="original", instruction=instruction, response=item["output"], language=None,
                snippet_id=None, provenance={"bench": "code_alpaca_2k"}, source_uri=str(path), source_row=i))
        return rows, "code_alpaca_2k (real)"
    for i in range(limit):
        rows.append(training_example(
            source="generated", instruction=f"Write a python function that returns {i} squared.",
            response=f"```python\ndef f():\n    return {i} ** 2\n```", language="python", snippet_id=None,
            provenance={"bench": "synthetic"}, source_uri="synthetic", source_row=i))
    return rows, "synthetic"


def projection(padding_fraction: float, tokens_per_example: float) -> dict:
    example_passes = PAPER_GENERATED * 1 + PAPER_ORIGINAL * 2
    real_tokens = example_passes * ASSUMED_TOKENS_PER_EXAMPLE
    # Padding costs compute too: padded tokens = real / (1 - padding fraction) at the measured fraction.
    padded_tokens = real_tokens / max(1e-6, 1 - padding_fraction)
    flops = 6 * PAPER_MODEL_PARAMS * padded_tokens
    gpu_seconds = flops / (A100_BF16_PEAK_FLOPS * ASSUMED_MFU)
    return {
        "assumptions": {
            "pairs": {"generated": PAPER_GENERATED, "original": PAPER_ORIGINAL},
            "epochs": {"generated": 1, "original": 2},
            "global_batch": 512,
            "optimizer_steps": {"generated": -(-PAPER_GENERATED // 512), "original": -(-PAPER_ORIGINAL * 2 // 512)},
            "model_params": PAPER_MODEL_PARAMS,
            "tokens_per_example": ASSUMED_TOKENS_PER_EXAMPLE,
            "measured_tokens_per_example_here": round(tokens_per_example, 1),
            "padding_fraction": round(padding_fraction, 4),
            "flops": "6 * params * padded tokens",
            "a100_bf16_peak_flops": A100_BF16_PEAK_FLOPS,
            "mfu": ASSUMED_MFU,
        },
        "real_tokens": real_tokens,
        "total_flops": flops,
        "a100_gpu_hours": round(gpu_seconds / 3600, 1),
        "wall_hours_on_8_a100": round(gpu_seconds / 3600 / 8, 2),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--per-device-batch", type=int, default=4)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)

    import torch

    from training.config import StageConfig, TrainConfig
    from training.finetune import run

    if args.threads:
        torch.set_num_threads(args.threads)
    rows, data_name = examples(limit=args.steps * args.global_batch * 2)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        shards = Path(tmp) / "shards"
        write_shards(rows, str(shards), RecordKind.TRAINING_EXAMPLE, seed=0, shard_records=256)
        config = TrainConfig(
            model=args.model, output_dir=str(Path(tmp) / "out"), max_length=args.max_length,
            global_batch_size=args.global_batch, per_device_batch_size=args.per_device_batch,
            save_steps=10_000, save_total_limit=1, verify_shards=True,
            stages=[StageConfig(name="bench", data=str(shards), epochs=1, max_steps=args.steps)],
        ).validate()
        started = time.perf_counter()
        summary = run(config, resume=False)[0]
        wall = time.perf_counter() - started
        logs = [json.loads(line) for line in (Path(tmp) / "out" / "stage-0-bench" / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in logs if "loss" in e]
    timed = steps[1:] or steps  # the first step includes warm-up (allocations, first kernels)
    tokens_per_second = statistics.median(e["tokens_per_second"] for e in timed)
    timed_tokens = sum(e["tokens_per_second"] * e["window_seconds"] for e in timed)
    tokens_per_cpu_second = timed_tokens / max(1e-9, sum(e["cpu_seconds"] for e in timed))
    padding = statistics.mean(e["padding_fraction"] for e in steps)
    examples_seen = sum(e["examples"] for e in steps)
    report = {
        "model": args.model,
        "data": data_name,
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "steps": len(steps),
        "global_batch": args.global_batch,
        "per_device_batch": args.per_device_batch,
        "gradient_accumulation": summary["gradient_accumulation_steps"],
        "max_length": args.max_length,
        "losses": [round(e["loss"], 4) for e in steps],
        "tokens_per_second_median": round(tokens_per_second, 1),
        "timed_steps": len(timed),
        # Wall-clock throughput depends on what else runs on the host; per CPU-second it does not.
        "tokens_per_cpu_second": round(tokens_per_cpu_second, 1),
        "host_load_average_1min": round(os.getloadavg()[0], 2),
        "padding_fraction_mean": round(padding, 4),
        "truncated_examples": summary["truncated_examples"],
        "examples": examples_seen,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "wall_seconds_incl_model_load": round(wall, 1),
    }
    report["projection"] = projection(padding, _tokens_per_example(rows, args.max_length))
    print(json.dumps(report, indent=2))
    return report


def _tokens_per_example(rows: list[dict], max_length: int) -> float:
    """Mean token count (template + BOS/EOS, truncated) of the bench examples, with the embedded tokenizer."""
    from training.config import TrainConfig
    from training.data import PromptFormat, encode_example
    from training.finetune import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(TrainConfig(), resolve_model("smollm2"))
    fmt = PromptFormat("paper")
    lengths = [len(encode_example(tokenizer, fmt.prompt(r["instruction"], tokenizer), r["response"], max_length)["input_ids"])
               for r in rows]
    return statistics.mean(lengths)


if __name__ == "__main__":
    main()
