"""The two attention paths of compiled training layers, alternated in ONE process over the same micro-batches.

    python bench/train_attention_probe.py [--examples 128] [--window 32] [--micro-batch 16] [--rounds 3]
                                          [--unpad-max-padding 0.2] [--optimizer] [--short-rows-max 256]
                                          [--trainer-order]

Why: ``--attention length_aware`` against ``sdpa`` in whole ``bench/train.py`` runs moves with the host (single
runs of one setting vary by up to 1.5x on a noisy afternoon), and each run is its own process. Here one process
loads the embedded SmolLM2, compiles its decoder layers (``training.finetune.compile_layers``), and times
forward + backward of the same micro-batches through sdpa and through the matmul path (transformers' eager
attention inside the compiled layer, as ``length_aware`` takes it for rows up to ``--short-rows-max`` tokens),
round after round, each path warmed first. Micro-batches are cut as the Trainer cuts them: real Code Alpaca
examples in their file order, sorted longest first within each ``--window`` (the optimizer step's examples),
``--micro-batch`` rows each, run as ``unpadded_groups`` with the loss at selected positions, bf16 autocast;
``--optimizer`` adds the streamlined Adafactor step after each window, as the Trainer does. Preload TCMalloc
(``LD_PRELOAD=.../libtcmalloc_minimal.so.4``) to match the training job's allocator.

``--trainer-order`` takes the rows in the order ``bench/train.py``'s Trainer reads them instead of the file's.

What it is not: the Trainer. On 2026-12-05 the matmul path won here by 2-20% and seemed to lose inside the Trainer
in whole runs of each setting; the Trainer crossover (``bench/train_attention_crossover.py``, one run alternating
the paths per optimizer step) then found the gain there too, 1.04-1.14x (README, "the attention kernel").
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

PATHS = ("sdpa", "matmul")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=128)
    parser.add_argument("--window", type=int, default=32, help="examples per optimizer step (sorted within)")
    parser.add_argument("--micro-batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unpad-max-padding", type=float, default=0.2)
    parser.add_argument("--short-rows-max", type=int, default=256, help="longest row the matmul path takes")
    parser.add_argument("--optimizer", action="store_true", help="an optimizer step after each window")
    parser.add_argument("--trainer-order", action="store_true",
                        help="the rows in the order bench/train.py's Trainer reads them (its shards, written from "
                             "the first --trainer-bench-examples examples), not the file's")
    parser.add_argument("--trainer-bench-examples", type=int, default=640,
                        help="with --trainer-order: the examples bench/train.py writes (2 x steps x global batch)")
    parser.add_argument("--json-out", default=None)
    return parser.parse_args(argv)


def trainer_order_rows(bench_examples: int, limit: int, tokenizer) -> tuple[list[dict], str]:
    """The first ``limit`` rows of the dataset ``bench/train.py`` trains on, in its order: the same examples
    written to shards as the bench writes them, read back through ``StageExamples`` (epoch 0)."""
    import tempfile

    from train import examples, write_bench_shards

    from training.data import PromptFormat, StageExamples, list_shards

    rows, data_name = examples(limit=bench_examples)
    with tempfile.TemporaryDirectory(prefix="probe-shards-") as tmp:
        write_bench_shards(rows, Path(tmp))
        dataset = StageExamples(list_shards(tmp), tokenizer, epochs=1, seed=42, max_length=1024,
                                prompt_format=PromptFormat("paper"))
        ordered = [dict(zip(("instruction", "response"), dataset.text(i))) for i in range(min(limit, len(dataset)))]
    return ordered, f"{data_name}, in the Trainer's order"


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch
    from train import examples, host_load

    import training.attention as attention
    from training.adafactor import StreamlinedAdafactor
    from training.allocator import allocator_in_use
    from training.config import TrainConfig
    from training.data import IGNORE_INDEX, Collator, PromptFormat, encode_example
    from training.finetune import (
        compile_layers,
        load_model,
        load_tokenizer,
        resolve_model,
        selected_positions_loss,
        unpadded_groups,
    )

    chosen = {"path": "sdpa"}
    attention.COMPILED_SHORT_ROWS_MAX = args.short_rows_max
    # "matmul": the project's length_aware (matmul path up to COMPILED_SHORT_ROWS_MAX).
    attention.length_aware_attention = attention.switchable_attention(
        lambda: attention.LENGTH_AWARE if chosen["path"] == "matmul" else "sdpa")
    source = resolve_model("smollm2")
    tokenizer = load_tokenizer(TrainConfig(model="smollm2"), source)
    if args.trainer_order:
        rows, data_name = trainer_order_rows(args.trainer_bench_examples, args.examples, tokenizer)
    else:
        rows, data_name = examples(limit=args.examples)
    fmt = PromptFormat("paper")
    encoded = [encode_example(tokenizer, fmt.prompt(r["instruction"], tokenizer), r["response"], 1024) for r in rows]
    ordered = [e for start in range(0, len(encoded), args.window)
               for e in sorted(encoded[start:start + args.window], key=lambda e: -len(e["input_ids"]))]
    collate = Collator(tokenizer.eos_token_id)
    batches = [collate(ordered[i:i + args.micro_batch]) for i in range(0, len(ordered), args.micro_batch)]
    if not batches:
        raise SystemExit("no micro-batches: no examples")
    per_window = max(1, args.window // args.micro_batch)
    model = load_model(source, attention.LENGTH_AWARE).train()
    compile_layers(model)
    optimizer = StreamlinedAdafactor(model.parameters(), lr=5e-5, scale_parameter=False, relative_step=False,
                                     warmup_init=False) if args.optimizer else None

    def run(index: int, batch) -> None:
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
        count = (inputs["labels"][..., 1:] != IGNORE_INDEX).sum()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.stack([selected_positions_loss(model, group, count)
                                for group in unpadded_groups(inputs, args.unpad_max_padding)]).sum()
        loss.backward()
        if optimizer is not None and (index + 1) % per_window == 0:
            optimizer.step()
            model.zero_grad(set_to_none=True)

    for path in PATHS:  # warm-up: both paths' graphs compiled before anything is timed
        chosen["path"] = path
        for index, batch in enumerate(batches):
            run(index, batch)
    cpu: dict[str, list[list[float]]] = {path: [] for path in PATHS}
    for round_index in range(args.rounds):
        for path in (PATHS if round_index % 2 == 0 else PATHS[::-1]):
            chosen["path"] = path
            seconds = []
            for index, batch in enumerate(batches):
                started = time.process_time()
                run(index, batch)
                seconds.append(round(time.process_time() - started, 3))
            cpu[path].append(seconds)
            print(f"[probe] round {round_index + 1} {path}: {sum(seconds):.2f} CPU-s", file=sys.stderr, flush=True)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    best = {path: min(sum(r) for r in runs) for path, runs in cpu.items()}
    report = {"data": data_name, "micro_batch_shapes": [list(b["input_ids"].shape) for b in batches],
              "settings": vars(args), "allocator": allocator_in_use(), "torch_threads": torch.get_num_threads(),
              "cpu_seconds_per_round": cpu, "best_round_cpu_seconds": best,
              "tokens_per_cpu_second_best": {p: round(tokens / s, 1) for p, s in best.items()},
              "sdpa_over_matmul_cpu": round(best["sdpa"] / best["matmul"], 3), "host": host_load()}
    print(json.dumps(report, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
