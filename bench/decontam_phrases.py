"""The phrase floor: how short a benchmark statement may be and still be guarded as a whole phrase.

For each floor k (words), builds the default index with ``phrase_min_words=k`` and counts

* recall: HumanEval items whose description is shorter than the word n-gram (10 words), pasted into a
  chatty instruction by the independent disguise generator (``tests/transforms/decontam/disguises.py``),
  that are caught, attributed to the right item;
* false positives: real instructions flagged by a phrase unit (and nothing else): Code Alpaca 2k pairs
  (instruction + input, output: as the pipeline checks them) and the docstrings of every stdlib function;
* since HumanEval has no statement under 5 words (so the index cannot show what a lower floor costs),
  the specificity of benchmark-like phrases of each length: sentence openings of HumanEval's prose cut
  to w words, and how many of them occur in those real texts.

    python bench/decontam_phrases.py            # needs ../shared/data/code_alpaca_2k.json
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from decontam import code_alpaca_records, stdlib_functions  # noqa: E402  (bench/decontam.py)

from tests.transforms.decontam import disguises  # noqa: E402
from transforms.decontam import benchmarks, normalize  # noqa: E402
from transforms.decontam.methods import DecontamConfig, DecontamIndex, _description, _prose  # noqa: E402

COLUMNS = ("instruction", "code")


def short_items(rows: list[dict], word_n: int) -> list[tuple[str, dict]]:
    """(task_id, chat record) of every item whose shortest prose cut has fewer than ``word_n`` words."""
    out = []
    for i, row in enumerate(rows):
        statement = benchmarks.extract_docstring(row["prompt"])
        shortest = min(len(normalize.word_tokens(t)) for t in (statement, _description(statement), _prose(statement)))
        if shortest < word_n:
            out.append((row["task_id"], disguises.short_docstring_chat(row, i)))
    return out


def phrase_specificity(rows: list[dict], corpora: dict[str, list[str]], lengths: list[int]) -> list[dict]:
    """How often a benchmark-like phrase of w words occurs in real text, for each w.

    HumanEval itself has no phrase under 5 words, so the index alone cannot show what a lower floor would
    cost. The pool: the first w words of every sentence of every HumanEval docstring's prose (statements
    read like "Return length of given string", "You are given a list of integers"). For each corpus: the
    share of pool phrases that occur in at least one of its texts, and how many texts hold one."""
    sentences = []
    for row in rows:
        prose = _prose(benchmarks.extract_docstring(row["prompt"]))
        sentences += [normalize.words(s) for s in re.split(r"(?<=[.!?])\s+", " ".join(prose.split())) if s]
    out = []
    for w in lengths:
        pool = {tuple(words[:w]) for words in sentences if len(words) >= w}
        entry = {"words": w, "pool_phrases": len(pool)}
        for name, texts in corpora.items():
            holders, hit = 0, set()
            for text in texts:
                words = normalize.words(text)
                grams = {tuple(words[i:i + w]) for i in range(len(words) - w + 1)} & pool
                hit |= grams
                holders += bool(grams)
            entry[f"{name}_phrases_seen"] = round(len(hit) / max(1, len(pool)), 4)
            entry[f"{name}_texts_holding_one"] = holders
            entry[f"{name}_examples"] = sorted(" ".join(g) for g in hit)[:4]
        out.append(entry)
    return out


def phrase_flags(index: DecontamIndex, records: list[dict]) -> list[tuple[int, dict]]:
    flagged = []
    for start in range(0, len(records), 512):
        batch = records[start:start + 512]
        for k, evidence in enumerate(index.check_batch(batch, COLUMNS)):
            phrase = [e for e in evidence if e.get("view") == "phrase"]
            if phrase and len(phrase) == len(evidence):
                flagged.append((start + k, phrase[0]))
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alpaca", default=str(REPO.parent / "shared" / "data" / "code_alpaca_2k.json"))
    parser.add_argument("--floors", default="2,3,4,5,6,7,8,9")
    args = parser.parse_args()

    with gzip.open(benchmarks.humaneval_path(), "rt") as f:
        rows = [json.loads(line) for line in f]
    items = benchmarks.load_humaneval()
    short = short_items(rows, DecontamConfig().word_n)
    alpaca = code_alpaca_records(args.alpaca)
    stdlib = [{"instruction": doc, "code": ""} for doc, _ in stdlib_functions() if doc]
    curve = []
    for k in map(int, args.floors.split(",")):
        index = DecontamIndex.build(items, DecontamConfig(methods=("ngram",), phrase_min_words=k))
        caught = sum(any(e["task_id"] == task_id or f"humaneval:{task_id}" in e.get("also_matched", ())
                         for e in index.check(record, COLUMNS)) for task_id, record in short)
        alpaca_fp = phrase_flags(index, alpaca)
        stdlib_fp = phrase_flags(index, stdlib)
        curve.append({
            "floor_words": k, "short_items": len(short), "recall": round(caught / len(short), 4),
            "code_alpaca_flagged": len(alpaca_fp), "stdlib_docstrings_flagged": len(stdlib_fp),
            "examples": [(records[i]["instruction"][:120], e["task_id"], e["matched_text"])
                         for records, fp in ((alpaca, alpaca_fp), (stdlib, stdlib_fp)) for i, e in fp[:3]],
        })
    corpora = {"code_alpaca": [r["instruction"] + "\n" + r["code"] for r in alpaca],
               "stdlib_docstrings": [r["instruction"] for r in stdlib]}
    specificity = phrase_specificity(rows, corpora, [int(k) for k in args.floors.split(",")])
    print(json.dumps({"code_alpaca_pairs": len(alpaca), "stdlib_docstrings": len(stdlib), "index_curve": curve,
                      "phrase_specificity": specificity}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
