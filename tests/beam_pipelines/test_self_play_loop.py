"""The self-play loop's plumbing: one round of generate -> solve -> shards -> fine-tune -> P3 evaluation, each step
its own process, the summary table, and a re-run that redoes nothing. The engine is the fake one with scripted
puzzles and solutions; the fine-tune trains a tiny random Llama (tests/training)."""
from __future__ import annotations

import json

import pytest

from beam_pipelines.self_play_loop import main as loop_main
from beam_pipelines.self_play_loop import round_seed
from tests.beam_pipelines.test_plumbing_fake_engine import SCRIPT
from tests.training.test_training import tiny_model_dir, tokenizer, tokenizer_dir  # noqa: F401  (fixtures)


@pytest.mark.heavy
def test_one_round_fine_tunes_on_verified_pairs_and_a_rerun_skips_every_step(tmp_path, shared_data, tiny_model_dir,  # noqa: F811
                                                                            capsys):
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    out = tmp_path / "loop"
    argv = [f"--output={out}", f"--p3-dir={shared_data / 'p3'}", "--rounds=1", f"--model={script}",
            f"--train-model={tiny_model_dir}", "--engine=fake", "--train-epochs=1",
            "--self-play-args=--puzzle-preset seed --num-prompts 2 --samples-per-prompt 6 --solve-attempts 4 "
            "--trivial-reject-rate 1.0",
            "--train-args=--set global_batch_size=2 --set per_device_batch_size=2 --set precision=fp32",
            "--eval-args=--samples-per-problem 1 --problem-limit 3"]
    assert loop_main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in summary["rows"]] == ["base", "0"]
    round0 = summary["rows"][1]
    assert round0["verified_pairs"] > 0 and round0["training_examples_so_far"] == round0["verified_pairs"]
    assert (out / "round-0" / "train" / "stage-0-self_play" / "COMPLETE.json").exists()
    assert round0["model"].endswith("round-0/train/stage-0-self_play/final")
    assert round0["generated_by"] == str(script)  # round 0's counts are M_0's; its pass@k is M_1's
    assert json.loads((out / "round-0" / "eval" / "summary.json").read_text())["problems"] == 3
    assert round0["run_seed"] == round_seed(0, 0)  # each round its own seed, passed to its self-play job
    manifest = json.loads((out / "round-0" / "self-play" / "manifest.json").read_text())
    assert manifest["settings"]["run_seed"] == round_seed(0, 0)
    assert "| base |" in (out / "summary.md").read_text()
    capsys.readouterr()
    stamps = {p: p.stat().st_mtime for p in out.rglob("summary.json")}
    assert loop_main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("already done") == 4  # base eval, self-play, fine-tune, eval
    assert all(p.stat().st_mtime == t for p, t in stamps.items() if p.parent != out)


def test_the_table_names_the_model_that_self_played_and_the_one_evaluated():
    from beam_pipelines.self_play_loop import table

    rows = [{"round": "base", "model": "m0", "p3": {"pass@1": 1.0}},
            {"round": "0", "generated_by": "m0", "model": "m1", "p3": {"pass@1": 2.0}, "verified_pairs": 3}]
    lines = table(rows, [1]).splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    round0 = [c.strip() for c in lines[3].strip("|").split("|")]
    assert round0[head.index("self-play with")] == "m0" and round0[head.index("evaluated model")] == "m1"
    assert round0[head.index("verified pairs")] == "3" and round0[head.index("P3 pass@1")] == "2.0"
