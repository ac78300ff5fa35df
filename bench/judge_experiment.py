"""The judge-score experiment of docs/EXPERIMENTS.md, on the output of one main-job run.

    python bench/judge_experiment.py runs/demo

For every snippet that has scored candidates it compares the mean judge score of
- the selected candidate (the best of the k, as the pipeline keeps it),
- a random candidate (one index per snippet, drawn with a seed from the snippet id),
- the mean over all k candidates (the expected score of a random pick),
- the original instruction of the corpus, where the snippet has one: scored here with the same engine,
  preset and scoring mode as the run (read from its manifest), through the same prompt and scoring code.
"""
from __future__ import annotations

import json
import random
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transforms.io.parquet import read_index, shard_urls  # noqa: E402


def rows(directory: str, columns=None) -> list[dict]:
    out = []
    for url in shard_urls(directory, read_index(directory)):
        out.extend(pq.read_table(url, columns=columns).to_pylist())
    return out


def score_originals(run_dir: str, manifest: dict, snippets: list[dict]) -> dict[str, float]:
    """Judge (original instruction, code) with the run's engine, preset and scoring mode."""
    from runners.engines import EngineConfig, build_engine
    from transforms.instruct.prompts import TokenizerSource, resolve_preset
    from transforms.instruct.requests import judge_tokens_for, plan_judgement, scored_pair

    with_original = [s for s in snippets if s.get("original_instruction")]
    if not with_original:
        return {}
    engine_fields = {k: v for k, v in manifest["engine"].items() if k in EngineConfig.__dataclass_fields__}
    if isinstance(engine_fields.get("vllm_engine_args"), list):
        engine_fields["vllm_engine_args"] = tuple(tuple(x) for x in engine_fields["vllm_engine_args"])
    config = EngineConfig(**engine_fields)
    preset = resolve_preset(manifest["preset"])
    tokenizer = TokenizerSource(manifest["model_dir"]).load()
    tokens = judge_tokens_for(preset, tokenizer)
    mode = manifest["method"]["scoring_mode"]
    candidates = [{**s, "instruction": s["original_instruction"]} for s in with_original]
    requests = [plan_judgement(c, preset, tokens, tokenizer) for c in candidates]
    engine = build_engine(config)
    try:
        results = engine.next_token_logprobs([r.prompt for r in requests], [r.token_ids for r in requests])
    finally:
        engine.close()
    return {c["id"]: scored_pair(c, res, tokens, mode)["score"] for c, res in zip(candidates, results)}


def main(run_dir: str) -> dict:
    manifest = json.loads(Path(run_dir, "manifest.json").read_text())
    scored = rows(f"{run_dir}/scored", ["snippet_id", "candidate_index", "score"])
    snippets = rows(f"{run_dir}/snippets", ["id", "code", "fence_lang", "original_instruction"])
    by_snippet = defaultdict(dict)
    for row in scored:
        by_snippet[row["snippet_id"]][row["candidate_index"]] = row["score"]
    selected, randomly, mean_all = [], [], []
    for snippet_id, scores in sorted(by_snippet.items()):
        selected.append(max(scores.values()))
        pick = random.Random(snippet_id).choice(sorted(scores))
        randomly.append(scores[pick])
        mean_all.append(statistics.fmean(scores.values()))
    originals = score_originals(run_dir, manifest, [s for s in snippets if s["id"] in by_snippet])
    report = {
        "run": run_dir,
        "model": manifest.get("model"),
        "preset": manifest.get("preset"),
        "scoring_mode": manifest.get("method", {}).get("scoring_mode"),
        "snippets": len(by_snippet),
        "candidates_scored": len(scored),
        "mean_selected": round(statistics.fmean(selected), 4),
        "mean_random_candidate": round(statistics.fmean(randomly), 4),
        "mean_of_all_candidates": round(statistics.fmean(mean_all), 4),
    }
    if originals:
        paired = [(max(by_snippet[i].values()), s) for i, s in originals.items()]
        report.update({
            "snippets_with_original": len(originals),
            "mean_original_instruction": round(statistics.fmean(originals.values()), 4),
            "mean_selected_same_snippets": round(statistics.fmean(p[0] for p in paired), 4),
            "selected_beats_original": sum(a > b for a, b in paired),
        })
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/demo")
