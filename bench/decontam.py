"""Throughput of the default method set (``ngram`` + ``signature``, with phrases and the structural check
on) vs the ``substring`` baseline (bigcode/Magicoder), same records, all of HumanEval.

Records: (instruction, code) pairs built from every module- and class-level function of the Python stdlib
(code = the function, instruction = the docstring of another function), cycled with different pairings
up to ``--records``; ``--plant-rate`` of them get an exact copy of a random HumanEval item (prompt +
canonical solution) as their code. Reports records/s of each method (``default`` is the whole default set
through ``DecontamIndex.check_batch``; ``ngram`` alone for comparison with earlier runs), the speed-up of
``default`` over ``substring``, recall on the exact copies and the flag rate on the clean records. Also
compares the two code tokenizers.

    python bench/decontam.py                 # >= 100k records (default 112,704)
    python bench/decontam.py --records 20000 # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runners.hardware import describe_machine  # noqa: E402
from tests.transforms.decontam import clean_sets  # noqa: E402
from transforms.decontam import benchmarks, normalize  # noqa: E402
from transforms.decontam.methods import DEFAULT_METHODS, DecontamConfig, DecontamIndex  # noqa: E402

COLUMNS = ("instruction", "code")


def stdlib_functions() -> list[tuple[str, str]]:
    """(docstring, code) of every module- and class-level function of the stdlib: the tests' clean set."""
    return [(r["instruction"], r["code"]) for r in clean_sets.stdlib_functions()]


def code_alpaca_records(path: str | Path) -> list[dict]:
    """Code Alpaca pairs as the pipeline checks them: the instruction (with its input, if any) and the
    output as the code column."""
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    return [{"id": str(i), "instruction": r["instruction"] + (f"\n{r['input']}" if r.get("input") else ""),
             "code": r["output"]} for i, r in enumerate(rows)]


def make_records(n: int, plant_rate: float, seed: int) -> tuple[list[dict], set[int]]:
    funcs = stdlib_functions()
    items = benchmarks.load_humaneval()
    rng = random.Random(seed)
    records, planted = [], set()
    for i in range(n):
        round_, j = divmod(i, len(funcs))
        instruction = funcs[(j * 7919 + round_ * 104729) % len(funcs)][0] or "Explain this function."
        code = funcs[j][1]
        if rng.random() < plant_rate:
            item = rng.choice(items)
            code = item.prompt + item.solutions[0]
            planted.add(i)
        records.append({"id": str(i), "instruction": instruction, "code": code})
    return records, planted


def timed(index: DecontamIndex, method: str, records: list[dict], batch: int) -> tuple[float, float, set[int]]:
    """(wall seconds, CPU seconds of this process, flagged record indices)."""
    flagged = set()
    start, cpu_start = time.perf_counter(), time.process_time()
    if method == "substring":
        for i, r in enumerate(records):
            if index.substring.check(r, COLUMNS) is not None:
                flagged.add(i)
    elif method == "default":
        for s in range(0, len(records), batch):
            for k, ev in enumerate(index.check_batch(records[s:s + batch], COLUMNS)):
                if ev:
                    flagged.add(s + k)
    else:
        for s in range(0, len(records), batch):
            for k, ev in enumerate(index.ngram.check_batch(records[s:s + batch], COLUMNS)):
                if ev is not None:
                    flagged.add(s + k)
    return time.perf_counter() - start, time.process_time() - cpu_start, flagged


def tokenizer_comparison(records: list[dict], limit: int = 5000) -> dict:
    texts = [r["code"] for r in records[:limit]]
    start = time.perf_counter()
    for s in range(0, len(texts), 512):
        normalize.batch_ngrams(texts[s:s + 512], 10, "code")
    regex_s = time.perf_counter() - start
    start = time.perf_counter()
    failed = 0
    for t in texts:
        if normalize.python_code_tokens(t) is None:
            failed += 1
    python_s = time.perf_counter() - start
    return {"texts": len(texts), "regex_compiled_texts_per_s": round(len(texts) / regex_s),
            "python_tokenize_texts_per_s (tokens only, no hashing)": round(len(texts) / python_s),
            "python_tokenize_failed": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=8 * 14088)
    parser.add_argument("--plant-rate", type=float, default=0.01)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    records, planted = make_records(args.records, args.plant_rate, args.seed)
    chars = sum(len(r["instruction"]) + len(r["code"]) for r in records) / len(records)
    start = time.perf_counter()
    index = DecontamIndex.build(benchmarks.load_humaneval(), DecontamConfig(methods=DEFAULT_METHODS))
    build_s = time.perf_counter() - start
    baseline = DecontamIndex.build(benchmarks.load_humaneval(), DecontamConfig(methods=("substring",)))

    result = {"machine": describe_machine(),
              "records": len(records), "mean_chars_per_record": round(chars), "planted_exact_copies": len(planted),
              "index_build_s": round(build_s, 2), "index": index.describe(), "load_average": os.getloadavg()}
    for method in ("default", "ngram", "substring"):
        index_for = baseline if method == "substring" else index
        seconds, cpu_seconds, flagged = timed(index_for, method, records, args.batch)
        result[method] = {
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2),
            "records_per_s": round(len(records) / seconds),
            "recall_exact_copies": round(len(flagged & planted) / max(1, len(planted)), 4),
            "flagged_clean": len(flagged - planted),
        }
    for method in ("default", "ngram"):
        result[f"speedup_{method}_vs_substring"] = round(result["substring"]["seconds"] / result[method]["seconds"], 1)
        # On a shared machine the wall-clock ratio moves with the neighbours' load; CPU time moves less.
        result[f"speedup_{method}_vs_substring_cpu"] = round(
            result["substring"]["cpu_seconds"] / result[method]["cpu_seconds"], 1)
    result["load_average_after"] = os.getloadavg()
    result["tokenizers"] = tokenizer_comparison(records)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
