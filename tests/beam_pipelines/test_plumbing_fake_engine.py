"""Beam plumbing of the jobs on the fake engine (``--engine fake``): keys, joins, dead letters, accounting and
runner equivalence, in seconds. What the model writes is tested on the real engines (the ``engine`` tier)."""
from __future__ import annotations

import json

import pyarrow.parquet as pq

from beam_pipelines.inverse_instruct import run as run_main
from beam_pipelines.self_play import run as run_self_play

MAIN_ARGS = ["--engine=fake", "--limit=12", "--num-candidates=3", "--max-new-tokens=16", "--emit-original",
             "--shard-records=5"]
FUNCTIONS = [f"def f{i}(x):\n    y = x * {i} + {i * i}\n    return [y, y - {i}]" for i in range(14)]
CORPUS = [{"instruction": f"Write function number {i}.", "response": f"```python\n{code}\n```"}
          for i, code in enumerate(FUNCTIONS)]
CORPUS.append({"instruction": "Explain recursion.", "response": "It is when a function calls itself."})


def _rows(directory):
    files = sorted(directory.glob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_main_job_balances_and_every_snippet_gets_a_winner(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in CORPUS))
    one = run_main(MAIN_ARGS + [f"--input={corpus}", f"--output={tmp_path / 'one'}"])
    assert one["balanced"], one["stages"]
    stages = one["stages"]
    assert stages["limit"]["records_out"] == 12 and stages["summarize"]["fanout"] == 3
    assert stages["summarize"]["records_out"] + stages["summarize"]["rejected_total"] == 3 * stages["summarize"]["records_in"]
    selected = _rows(tmp_path / "one" / "selected")
    assert selected, "the fake engine's candidates pass the post-filters, so every snippet has a winner"
    assert all(len(r["all_scores"]) == len(r["all_candidate_indices"]) >= 1 for r in selected)
    assert len(selected) == stages["select"]["records_out"] == stages["dedup"]["records_out"]
    generated = _rows(tmp_path / "one" / "training" / "generated")
    assert sorted(r["snippet_id"] for r in generated) == sorted(r["snippet_id"] for r in selected)


SCRIPT = {
    "texts": [
        # a puzzle that verifies (twice: the second copy is a duplicate puzzle)
        "x: int) -> bool:\n    return x * x == 49 and x > 0\n\ndef g5():\n    return 7\n",
        "x: int) -> bool:\n    return x * x == 49 and x > 0\n\ndef g5():\n    return 7\n",
        # another that verifies
        "s: str) -> bool:\n    return s[::-1] == 'olleh'\n\ndef g5():\n    return 'hello'\n",
        # a wrong solution, a syntax error and a missing solution
        "n: int) -> bool:\n    return n + 1 == 10\n\ndef g5():\n    return 3\n",
        "n: int) -> bool:\n    return n +\n",
        "n: int) -> bool:\n    return n == 3\n",
    ],
}


def test_self_play_job_keeps_each_verified_puzzle_once_and_shards_it(tmp_path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    args = ["--engine=fake", f"--model={script}", "--num-prompts=6", "--samples-per-prompt=4", "--shots=4"]
    summary = run_self_play(args + [f"--output={tmp_path / 'a'}"])
    assert summary["samples"] == 24 and summary["balanced"]
    kept = _rows(tmp_path / "a" / "puzzles")
    assert kept, "two distinct scripted puzzles verify"
    assert {r["sol"].splitlines()[-1].strip() for r in kept} <= {"return 7", "return 'hello'"}
    assert len({r["puzzle_id"] for r in kept}) == len(kept)
    rejected = _rows(tmp_path / "a" / "rejected")
    assert {r["reason"] for r in rejected} >= {"verify_failed", "syntax_error", "missing_solution"}
    training = _rows(tmp_path / "a" / "training" / "puzzles")
    assert sorted(t["snippet_id"] for t in training) == sorted(r["id"] for r in kept)
    from training.data import list_shards, verify_shards

    verify_shards(list_shards(str(tmp_path / "a" / "training" / "puzzles")))  # the fine-tuning job reads them
    again = run_self_play(args + [f"--output={tmp_path / 'b'}"])
    assert again["rejected"] == summary["rejected"] and again["verified_puzzles"] == summary["verified_puzzles"]
    assert sorted(r["id"] for r in _rows(tmp_path / "b" / "puzzles")) == sorted(r["id"] for r in kept)
