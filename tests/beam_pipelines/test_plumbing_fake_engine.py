"""Beam plumbing of the jobs on the fake engine (``--engine fake``): keys, joins, dead letters, accounting and
runner equivalence, in seconds. What the model writes is tested on the real engines (the ``engine`` tier)."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

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


@pytest.mark.heavy
def test_main_job_balances_and_every_snippet_gets_a_winner(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in CORPUS))
    one = run_main(MAIN_ARGS + [f"--input={corpus}", f"--output={tmp_path / 'one'}"])
    assert one["balanced"], one["stages"]
    stages = one["stages"]
    assert stages["limit"]["records_out"] == 12 and stages["summarize"]["fanout"] == 3
    assert (stages["summarize"]["records_out"] + stages["summarize"]["rejected_total"]
            == 3 * stages["summarize"]["records_in"])
    selected = _rows(tmp_path / "one" / "selected")
    assert selected, "the fake engine's candidates pass the post-filters, so every snippet has a winner"
    assert all(len(r["all_scores"]) == len(r["all_candidate_indices"]) >= 1 for r in selected)
    assert len(selected) == stages["select"]["records_out"] == stages["dedup"]["records_out"]
    generated = _rows(tmp_path / "one" / "training" / "generated")
    assert sorted(r["snippet_id"] for r in generated) == sorted(r["snippet_id"] for r in selected)


def without_timings(summary: dict) -> dict:
    """The summary minus every ``*seconds`` entry, at any depth (the inference cache's has one too)."""
    return {k: without_timings(v) if isinstance(v, dict) else v for k, v in summary.items()
            if not k.endswith("seconds")}


SCRIPT = {
    "rules": [
        # solve prompts end with the solution header "def g(...):": g's body (right, wrong, duplicate, unparsable)
        {"prompt_endswith": "):", "texts": [
            "\n    return 111\n", "\n    return 111\n", "\n    return 100 + 11\n",
            # right, but slower than --verify-timeout (not time.sleep: self-play refuses a g importing time)
            "\n    n = 0\n    while n < 10 ** 9:\n        n += 1\n    return 111\n",
            "\n    return 'hello'\n", "\n    return (\n",
        ]},
        # generation prompts (seed preset) end with "def f5(": a puzzle and the model's own g
        {"prompt_endswith": "", "texts": [
            "x: int) -> bool:\n    return x * x == 12321 and x > 0\n\ndef g5():\n    return 111\n",
            "s: str) -> bool:\n    return s[::-1] == 'olleh'\n\ndef g5():\n    return 'hello'\n",
            "n: int) -> bool:\n    return n +\n",
            "n: int) -> bool:\n    return n == n\n\ndef g5():\n    return 1\n",
        ]},
    ],
}


@pytest.mark.heavy
def test_self_play_runs_each_verified_pairs_training_text_literal_runs_times(tmp_path, monkeypatch):
    """``--literal-runs`` reaches every verification and the manifest: each distinct solution that verified had its
    training text run as a plain script that many times (the scripted solutions are honest, so no run fails)."""
    from transforms.execute import isolation

    runs = []
    real = isolation.run_plain_script
    monkeypatch.setattr(isolation, "run_plain_script", lambda *a, **k: runs.append(a[0]) or real(*a, **k))
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    summary = run_self_play(["--engine=fake", f"--model={script}", "--puzzle-preset=seed", "--num-prompts=2",
                             "--samples-per-prompt=2", "--solve-attempts=6", "--trivial-reject-rate=0",
                             "--literal-runs=2", f"--output={tmp_path / 'out'}"])
    assert summary["balanced"], summary
    kept = _rows(tmp_path / "out" / "puzzles")
    verified = sum(len(r["solutions"]) for r in kept)
    assert verified >= 2, kept
    assert len(runs) == 2 * verified, (len(runs), verified)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["settings"]["literal_runs"] == 2, manifest["settings"]


@pytest.mark.heavy
def test_self_play_job_solves_filters_and_shards_scripted_puzzles(tmp_path):
    """Scripted generations: two puzzles that verify (each written more than once), a syntax error and a trivial
    puzzle; scripted solutions: right (twice, and once longer), wrong and unparsable. Every sample and every
    attempt ends in exactly one place, each puzzle is kept once with its distinct verified solutions, shortest
    first, and the training text is the reference's."""
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    args = ["--engine=fake", f"--model={script}", "--puzzle-preset=seed", "--num-prompts=4",
            "--samples-per-prompt=6", "--solve-attempts=6", "--trivial-reject-rate=1.0"]
    summary = run_self_play(args + [f"--output={tmp_path / 'a'}"])
    assert summary["samples"] == 24 and summary["balanced"], summary
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert all(stage["balanced"] for stage in manifest["stages"].values()), manifest["stages"]
    kept = _rows(tmp_path / "a" / "puzzles")
    assert kept, "the scripted puzzles verify"
    assert len({r["id"] for r in kept}) == len(kept)
    square = next(r for r in kept if "x * x == 12321" in r["sat"])
    assert square["solutions"] == [  # distinct, shortest first
        "def g():\n    return 111\n", "def g():\n    return 100 + 11\n"]
    assert square["sol"] == square["solutions"][0]
    rejected = _rows(tmp_path / "a" / "rejected")
    reasons = {r["reason"] for r in rejected}
    assert {"syntax_error", "duplicate_puzzle", "solution_failed", "solution_unparsed"} <= reasons, reasons
    assert "trivial_answer" in reasons or "answer_unused" in reasons, reasons  # n == n is true for every n
    slow = [r for r in rejected if "10 ** 9" in r["payload"]]
    assert slow and {r["reason"] for r in slow} == {"solution_timeout"}, [(r["reason"], r["detail"]) for r in slow]
    training = _rows(tmp_path / "a" / "training" / "puzzles")
    assert len(training) == sum(len(r["solutions"]) for r in kept)
    assert all(t["instruction"] == "" and t["response"].endswith("assert f(g())\n\n") for t in training)
    from training.data import list_shards, verify_shards

    verify_shards(list_shards(str(tmp_path / "a" / "training" / "puzzles")))  # the fine-tuning job reads them
    again = run_self_play(args + [f"--output={tmp_path / 'b'}"])
    assert without_timings(again) == without_timings(summary)
    assert sorted(r["id"] for r in _rows(tmp_path / "b" / "puzzles")) == sorted(r["id"] for r in kept)
    assert manifest["stages"]["training_cap"]["records_out"] == len(training) > 1
    capped = run_self_play(args + ["--example-cap=1", f"--output={tmp_path / 'c'}"])
    assert capped["balanced"], capped
    assert len(_rows(tmp_path / "c" / "training" / "puzzles")) == 1
    cap_stage = json.loads((tmp_path / "c" / "manifest.json").read_text())["stages"]["training_cap"]
    assert (cap_stage["records_in"], cap_stage["records_out"]) == (len(training), 1), cap_stage
    assert cap_stage["rejected"] == {"over_example_cap": len(training) - 1}, cap_stage


@pytest.mark.heavy
@pytest.mark.parametrize("postfilters", [True, False])
def test_without_dedup_every_copy_of_the_same_code_gets_its_own_winner(tmp_path, postfilters):
    # The paper profile turns dedup off: rows whose code is equal (here also up to whitespace) are separate
    # snippets, each with its own candidates and winner; none may be lost or share another's.
    same = FUNCTIONS[0]
    rows = [{"instruction": f"Variant {i} of the task.", "response": f"```python\n{code}\n```"}
            for i, code in enumerate([same, same, same.replace("    ", "  "), FUNCTIONS[1]])]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["--engine=fake", "--num-candidates=3", "--max-new-tokens=16", "--emit-original", "--no-dedup",
            f"--input={corpus}", f"--output={tmp_path / 'out'}"] + ([] if postfilters else ["--no-postfilters"])
    summary = run_main(args)
    assert summary["balanced"], summary["stages"]
    assert summary["stages"]["extract"]["records_out"] == 4
    selected = _rows(tmp_path / "out" / "selected")
    assert len(selected) == 4, [r.get("original_instruction") for r in selected]
    assert sorted(r["original_instruction"] for r in selected) == [f"Variant {i} of the task." for i in range(4)]
    assert len({r["id"] for r in selected}) == 4


@pytest.mark.parametrize("decontam_source", [True, False])
def test_kept_originals_are_decontaminated_with_their_full_response(tmp_path, decontam_source):
    """--emit-original writes the corpus's full response of each kept snippet, while --decontam-source checks only
    the extracted block: a benchmark item in a second block must not reach training/original. It is one dead
    letter (decontam_original), and the snippet, harmless, still makes its generated pair."""
    from tests.beam_pipelines.test_paper_profile import HARMLESS, dead_letters, humaneval_0

    leak = humaneval_0()
    rows = [{"instruction": "Write a function that multiplies two numbers and a helper.",
             "response": f"Here it is:\n{HARMLESS}\nAnd a helper:\n```python\n{leak}```\n"},
            {"instruction": "Write a function that reverses a text.",
             "response": "```python\ndef reverse_text(text):\n    return text[::-1]\n```"}]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    summary = run_main(["--engine=fake", "--num-candidates=2", "--emit-original", f"--input={corpus}", "--quiet",
                        f"--output={out}"] + (["--decontam-source"] if decontam_source else []))
    assert summary["balanced"], summary["stages"]
    assert sorted(r["source_row"] for r in _rows(out / "training" / "generated")) == [0, 1]
    originals = _rows(out / "training" / "original")
    assert [r["source_row"] for r in originals] == [1]
    assert not [r for r in originals if "has_close_elements" in r["response"]]
    holding = [r for r in dead_letters(out) if "has_close_elements" in r["payload"]]
    assert [(r["stage"], r["reason"], r["source_row"]) for r in holding] == [("decontam_original", "contaminated", 0)]
    assert summary["stages"]["decontam_original"] == {
        "records_in": 2, "records_out": 1, "rejected": {"contaminated": 1}, "rejected_total": 1, "fanout": 1,
        "balanced": True}
