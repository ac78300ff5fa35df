"""The self-play loop's plumbing: one round of generate -> solve -> shards -> fine-tune -> P3 evaluation, each step
its own process, the summary table, and a re-run that redoes nothing. The engine is the fake one with scripted
puzzles and solutions; the fine-tune trains a tiny random Llama (tests/training)."""
from __future__ import annotations

import json
import sys

import pytest

from beam_pipelines.self_play_loop import main as loop_main
from beam_pipelines.self_play_loop import round_seed
from beam_pipelines.steps import marker_path, run_step
from tests.beam_pipelines.test_plumbing_fake_engine import SCRIPT
from tests.beam_pipelines.test_self_play_merge import F1, F2, solved, text, write_round
from tests.beam_pipelines.tiny_p3 import TINY_P3
from tests.training.test_training import tiny_model_dir, tokenizer, tokenizer_dir  # noqa: F401  (fixtures)
from transforms.io.parquet import read_rows


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
            "--eval-args=--samples-per-problem 1 --problem-limit 3", "--pass-k=1"]
    assert loop_main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["round"] for r in summary["rows"]] == ["base", "0"]
    round0 = summary["rows"][1]
    assert round0["verified_pairs"] > 0 and round0["training_examples_so_far"] == round0["verified_pairs"]
    assert (out / "round-0" / "train" / "stage-0-epoch_1" / "COMPLETE.json").exists()
    assert round0["model"].endswith("round-0/train/stage-0-epoch_1/final") and round0["epoch"] == 1
    assert round0["generated_by"] == str(script)  # round 0's counts are M_0's; its pass@k is M_1's
    assert json.loads((out / "round-0" / "eval-epoch-1" / "summary.json").read_text())["problems"] == 3
    assert [(r["p3_problems"], r["p3_samples_per_problem"]) for r in summary["rows"]] == [(3, 1), (3, 1)]
    assert round0["trained"] is True and summary["ks"] == [1]
    stage = json.loads((out / "round-0" / "train" / "stage-0-epoch_1" / "COMPLETE.json").read_text())
    assert (round0["fine_tune_steps"], round0["peak_lr_fraction"]) == (stage["global_steps"], stage["peak_lr_fraction"])
    assert stage["global_steps"] >= 1 and stage["peak_lr_fraction"] < 1  # a few steps against a 10-step warm-up
    assert "(still in warm-up: lr at most" in (out / "summary.md").read_text()
    assert round0["run_seed"] == round_seed(0, 0)  # each round its own seed, passed to its self-play job
    manifest = json.loads((out / "round-0" / "self-play" / "manifest.json").read_text())
    assert manifest["settings"]["run_seed"] == round_seed(0, 0)
    assert "| base |" in (out / "summary.md").read_text()
    capsys.readouterr()
    stamps = {p: p.stat().st_mtime for p in out.rglob("summary.json")}
    assert loop_main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("already done") == 5  # base eval, self-play, merge, fine-tune, eval
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


# Round r's verified pairs, written by hand: round 1 finds one of round 0's solutions again, and one of its own.
ROUNDS = {0: [solved(F1, ["def g():\n    return 4", "def g():\n    return 3+1", "def g():\n    return 5-1"], 0),
              solved(F2, ['def g(n=3):\n    return "ab"'], 1)],
          1: [solved(F1, ["def g():\n    return 4", "def g():\n    return 2+2"], 3)]}


def stand_in_jobs(driver, name, command, log, done, **kwargs):
    """The real steps (markers, upstream fingerprints, skipping) and the real merge job; the self-play, evaluation
    and fine-tune jobs are stood in for: their outputs are written here, and the step's process does nothing."""
    if not any(w == "beam_pipelines.self_play_merge" for w in command):
        if not done.exists():
            if "beam_pipelines.self_play" in command:
                iteration = int(next(w for w in command if w.startswith("--iteration=")).split("=")[1])
                write_round(done.parent, iteration, ROUNDS[iteration])
            elif "training.finetune" in command:  # every stage's marker (each epoch's model is evaluated)
                stages = json.loads(next(w for w in command if w.startswith("stages="))[len("stages="):])
                for i, stage in enumerate(stages):
                    marker = done.parent.parent / f"stage-{i}-{stage['name']}" / "COMPLETE.json"
                    marker.parent.mkdir(parents=True, exist_ok=True)
                    marker.write_text(json.dumps({"stage": stage["name"], "epochs": stage["epochs"]}))
            else:  # an evaluation's summary
                done.parent.mkdir(parents=True, exist_ok=True)
                done.write_text(json.dumps({"pass@1": 0.0, "pass@10": 0.0, "solved": [], "problems": 228,
                                            "samples_per_problem": 10}))
        kwargs.pop("prepare", None)
        command = [sys.executable, "-c", "pass", name]
    run_step(driver, name, command, log, done, **kwargs)


def test_the_merge_is_a_step_a_rerun_skips_and_a_round_that_ran_again_refuses(tmp_path, monkeypatch, capsys):
    from beam_pipelines import self_play_loop

    monkeypatch.setattr(self_play_loop, "run_step", stand_in_jobs)
    monkeypatch.setattr("transforms.stats.report.write_report", lambda output: None)
    out = tmp_path / "loop"
    argv = [f"--output={out}", f"--p3-dir={TINY_P3}", "--rounds=2", "--run-seed=5"]
    assert loop_main(argv) == 0
    merged = out / "round-1" / "training-merged"
    assert sorted(r["response"] for r in read_rows(str(merged / "training" / "puzzles"))) == sorted([
        text(F1, "def g():\n    return 4"), text(F1, "def g():\n    return 3+1"), text(F1, "def g():\n    return 5-1"),
        text(F2, 'def g(n=3):\n    return "ab"'), text(F1, "def g():\n    return 2+2")])
    summary = json.loads((out / "summary.json").read_text())
    last_epochs = [row for row in summary["rows"][1:] if row["epoch"] == row["epochs"]]
    assert [row["training_examples_so_far"] for row in last_epochs] == [4, 5]  # not 4 + 2

    capsys.readouterr()
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("round-*/training-merged/**/*") if p.is_file()}
    assert loop_main(argv) == 0
    err = capsys.readouterr().err
    assert all(f"round {r}: merge the verified pairs of rounds 0..{r}: already done" in err for r in range(2))
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # Round 0's training set does not depend on how many rounds the loop runs.
    assert loop_main([f"--output={tmp_path / 'one'}", f"--p3-dir={TINY_P3}", "--rounds=1", "--run-seed=5"]) == 0
    index = json.loads((out / "round-0" / "training-merged" / "training" / "puzzles" / "shards.json").read_text())
    alone = json.loads((tmp_path / "one" / "round-0" / "training-merged" / "training" / "puzzles" /
                        "shards.json").read_text())
    assert [s["sha256"] for s in index["shards"]] == [s["sha256"] for s in alone["shards"]] and index["total_rows"]

    # Round 0's self-play ran again (another run id in its marker): the merges that read it refuse.
    marker = marker_path(out / "round-0" / "self-play" / "summary.json")
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "run": "another run"}))
    with pytest.raises(SystemExit, match="ran again after this step finished"):
        loop_main(argv)


def test_an_empty_merged_set_says_whether_there_was_no_pair_or_the_cap_dropped_them(tmp_path, monkeypatch, capsys):
    from beam_pipelines import self_play_loop

    def capped_at_zero(driver, name, command, log, done, **kwargs):  # a round run with --example-cap 0
        stand_in_jobs(driver, name, command, log, done, **kwargs)
        if "beam_pipelines.self_play" in command:
            manifest = json.loads((done.parent / "manifest.json").read_text())
            manifest["settings"]["example_cap"] = 0
            (done.parent / "manifest.json").write_text(json.dumps(manifest))

    monkeypatch.setattr(self_play_loop, "run_step", capped_at_zero)
    monkeypatch.setattr("transforms.stats.report.write_report", lambda output: None)
    assert loop_main([f"--output={tmp_path / 'capped'}", f"--p3-dir={TINY_P3}", "--rounds=1"]) == 0
    err = capsys.readouterr().err
    assert ("round 0: the merged set is empty after the cap: 4 verified pair(s) in rounds 0..0, 4 example(s) over "
            "the example cap of 0, so no fine-tune; M_1 = M_0") in err and "no verified pair" not in err

    monkeypatch.setitem(ROUNDS, 0, [])  # no pair at all: that is what it says, cap of 0 or not
    assert loop_main([f"--output={tmp_path / 'none'}", f"--p3-dir={TINY_P3}", "--rounds=1"]) == 0
    err = capsys.readouterr().err
    assert "round 0: no verified pair in rounds 0..0 yet, so no fine-tune; M_1 = M_0" in err
    assert "after the cap" not in err


def test_rows_record_the_evaluation_size_and_a_round_that_trained_nothing_says_so(tmp_path, monkeypatch):
    from beam_pipelines import self_play_loop
    from transforms.stats.report import loop_report

    monkeypatch.setattr(self_play_loop, "run_step", stand_in_jobs)
    monkeypatch.setattr("transforms.stats.report.write_report", lambda output: None)
    monkeypatch.setitem(ROUNDS, 0, [])  # round 0 verifies nothing: no fine-tune; round 1 trains
    out = tmp_path / "loop"
    assert loop_main([f"--output={out}", f"--p3-dir={TINY_P3}", "--rounds=2", "--eval-epochs=last"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    base, round0, round1 = summary["rows"]
    assert [(r["p3_problems"], r["p3_samples_per_problem"]) for r in summary["rows"]] == [(228, 10)] * 3
    assert "trained" not in base and round1["trained"] is True and "not_trained" not in round1
    assert round0["trained"] is False and round0["model"] == base["model"] and round0["evaluation"] == "base-eval"
    why = "not trained: no verified pair in rounds 0..0 yet; evaluated model = previous (smollm2)"
    assert round0["not_trained"] == why and round1["evaluation"] == "round-1/eval-epoch-4"
    md = (out / "summary.md").read_text().splitlines()
    head = [c.strip() for c in md[0].strip("|").split("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md[2:]]
    assert [c[head.index("fine-tuned")] for c in cells] == ["", why, "yes"]  # the stand-in's marker has no steps
    assert [c[head.index("P3 problems x samples")] for c in cells] == ["228 x n=10"] * 3
    page = loop_report(summary)
    assert "<th>fine-tuned</th>" in page and f"<td>{why}</td>" in page and "<td>yes</td>" in page
    assert "<th>P3 problems x samples</th>" in page and page.count("<td>228 x n=10</td>") == 3


@pytest.mark.parametrize("eval_args, pass_k, error", [
    ("--samples-per-problem 2 --problem-limit 20", None, "--pass-k 1,10 asks for pass@10 but each evaluation draws "
                                                         "n=2 sample(s) per problem"),
    ("--samples-per-problem 20 --pass-k 1,5", None, "the evaluation computes only pass@1,5"),
    ("--samples-per-problem 0", None, "(--eval-args): --samples-per-problem must be at least 1"),
    ("--samples-per-problem 2", "1,x", "--pass-k must be comma-separated integers"),
])
def test_a_pass_k_the_evaluation_does_not_compute_is_refused_before_any_work(tmp_path, capsys, eval_args, pass_k,
                                                                             error):
    out = tmp_path / "loop"
    argv = [f"--output={out}", f"--p3-dir={TINY_P3}", f"--eval-args={eval_args}",
            *([f"--pass-k={pass_k}"] if pass_k else [])]
    with pytest.raises(SystemExit):
        loop_main(argv)
    assert error in capsys.readouterr().err and not out.exists()


def test_a_pass_k_within_the_samples_per_problem_is_accepted(tmp_path):
    from beam_pipelines.self_play_loop import parse_args

    args = parse_args(["--output=o", f"--p3-dir={TINY_P3}", "--eval-args=--samples-per-problem 2 --problem-limit 20",
                       "--pass-k=1,2"])
    assert args.ks == (1, 2)


def test_the_fine_tuned_cell_names_the_steps_and_a_warm_up_never_left():
    from transforms.stats.report import loop_fine_tune_cell

    assert loop_fine_tune_cell({"round": "base"}) == ""
    assert loop_fine_tune_cell({"trained": False, "not_trained": "not trained: no pair"}) == "not trained: no pair"
    assert loop_fine_tune_cell({"trained": True, "fine_tune_steps": 40, "peak_lr_fraction": 1.0}) == "yes, 40 steps"
    assert loop_fine_tune_cell({"trained": True, "fine_tune_steps": 1, "peak_lr_fraction": 1.0}) == "yes, 1 step"
    assert loop_fine_tune_cell({"trained": True, "fine_tune_steps": 3, "peak_lr_fraction": 0.2}) == (
        "yes, 3 steps (still in warm-up: lr at most 20% of its value)")


@pytest.mark.parametrize("option, value, error", [
    ("--self-play-args", "--num-promptz 2", "the self-play step (--self-play-args): unknown option:\n  --num-promptz"),
    ("--self-play-args", "--solve-prefix /no/such/file", "--solve-prefix: /no/such/file does not exist"),
    ("--eval-args", "--samples-per-problm 3", "(--eval-args): unknown option:\n  --samples-per-problm"),
])
def test_a_bad_pass_through_option_is_refused_before_the_base_evaluation(tmp_path, capsys, option, value, error):
    out = tmp_path / "loop"
    with pytest.raises(SystemExit):
        loop_main([f"--output={out}", f"--p3-dir={TINY_P3}", f"{option}={value}"])
    assert error in capsys.readouterr().err and not out.exists()


def test_each_epoch_of_a_rounds_fine_tune_is_a_one_epoch_stage_and_is_evaluated(tmp_path, monkeypatch):
    """As fine_tune1.sh: one-epoch steps, each continuing from the previous one's weights, each evaluated on the
    P3 test puzzles; the next round self-plays with the last epoch's model (gen.sh: epoch_$EPOCHS_MAX). The loop
    used to train one 4-epoch stage and evaluate only its end."""
    from beam_pipelines import self_play_loop

    commands = []

    def recording(driver, name, command, log, done, **kwargs):
        commands.append((name, list(command)))
        stand_in_jobs(driver, name, command, log, done, **kwargs)

    monkeypatch.setattr(self_play_loop, "run_step", recording)
    monkeypatch.setattr("transforms.stats.report.write_report", lambda output: None)
    out = tmp_path / "loop"
    assert loop_main([f"--output={out}", f"--p3-dir={TINY_P3}", "--rounds=2", "--train-epochs=2"]) == 0
    fine_tunes = [c for name, c in commands if "training.finetune" in c]
    assert len(fine_tunes) == 2
    stages = json.loads(next(w for w in fine_tunes[0] if w.startswith("stages="))[len("stages="):])
    assert [(s["name"], s["epochs"]) for s in stages] == [("epoch_1", 1.0), ("epoch_2", 1.0)]
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [(r["round"], r.get("epoch")) for r in rows] == [("base", None), ("0", 1), ("0", 2), ("1", 1), ("1", 2)]
    assert [r["evaluation"] for r in rows[1:3]] == ["round-0/eval-epoch-1", "round-0/eval-epoch-2"]
    assert rows[1]["model"].endswith("round-0/train/stage-0-epoch_1/final")
    assert rows[2]["model"].endswith("round-0/train/stage-1-epoch_2/final")
    round1_self_play = next(c for name, c in commands if name.startswith("round 1: self-play"))
    assert f"--model={rows[2]['model']}" in round1_self_play or rows[2]["model"] in round1_self_play
    assert rows[3]["generated_by"] == rows[2]["model"]
    md = (out / "summary.md").read_text()
    assert "| 0, epoch 1/2 |" in md and "| 1, epoch 2/2 |" in md

    last = tmp_path / "last"
    assert loop_main([f"--output={last}", f"--p3-dir={TINY_P3}", "--rounds=1", "--train-epochs=2",
                      "--eval-epochs=last"]) == 0
    rows = json.loads((last / "summary.json").read_text())["rows"]
    assert [(r["round"], r.get("epoch")) for r in rows] == [("base", None), ("0", 2)]
    assert not (last / "round-0" / "eval-epoch-1").exists()


def test_a_fraction_of_an_epoch_is_a_last_shorter_stage_and_no_epochs_is_refused(tmp_path, capsys):
    from beam_pipelines.self_play_loop import epoch_stages

    assert epoch_stages(4) == [(f"epoch_{i}", 1.0) for i in range(1, 5)]
    assert epoch_stages(2.5) == [("epoch_1", 1.0), ("epoch_2", 1.0), ("epoch_3", 0.5)]
    assert epoch_stages(0.25) == [("epoch_1", 0.25)]
    with pytest.raises(SystemExit):
        loop_main([f"--output={tmp_path / 'o'}", f"--p3-dir={TINY_P3}", "--train-epochs=0"])
    assert "--train-epochs must be more than 0, got 0" in capsys.readouterr().err
