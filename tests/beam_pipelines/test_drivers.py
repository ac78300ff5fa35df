"""The drivers' own logic (paper, self-play-loop) with their steps stood in for: each step writes what its job would,
at once, so that what the drivers pass to their jobs and read back can be checked without running a job."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from beam_pipelines import paper, self_play_loop
from tests.beam_pipelines.tiny_p3 import TINY_P3


def _option(command, name):
    for word in command:
        if word.startswith(f"--{name}="):
            return word.split("=", 1)[1]
    return None


class FakeSteps:
    """Stands in for ``run_step``: records each step's full command and writes its done file."""

    def __init__(self):
        self.commands: dict[str, list[str]] = {}
        self.upstream: dict[str, list[Path]] = {}

    def __call__(self, driver, name, command, log, done, *, prepare=None, upstream=(), **kwargs):
        full = [*command, *(prepare() if prepare is not None else ())]
        self.commands[name] = full
        self.upstream[name] = list(upstream)
        done.parent.mkdir(parents=True, exist_ok=True)
        module = next((w for w in full if w.startswith(("beam_pipelines.", "training."))), "")
        if module == "beam_pipelines.inverse_instruct":
            data = done.parent
            # --emit-original=all: the shards step counts generated and original examples together.
            done.write_text(json.dumps({"profile": "paper", "stages": {"shards": {"records_out": 10}}}))
            for source, rows in (("generated", 4), ("original", 6)):
                (data / "training" / source).mkdir(parents=True, exist_ok=True)
                (data / "training" / source / "shards.json").write_text(json.dumps({"total_rows": rows,
                                                                                    "shards": []}))
        elif module == "beam_pipelines.self_play":
            done.write_text(json.dumps({"training_examples": 2, "verified_pairs": 2, "samples": 8,
                                        "run_seed": int(_option(full, "run-seed") or 0)}))
            cap = 25_000 if _option(full, "iteration") == "0" else 1_000_000
            (done.parent / "manifest.json").write_text(json.dumps({"settings": {"example_cap": cap}}))
        elif module == "beam_pipelines.self_play_merge":
            # Each fake round brings 2 examples, one of which an earlier round found too: n rounds, n + 1 examples.
            done.write_text(json.dumps({"training_examples": 1 + sum(w.startswith("--round=") for w in full)}))
        elif module == "beam_pipelines.evaluate":
            done.write_text(json.dumps({"pass@1": 50.0, "pass@10": 60.0, "solved": []}))
        else:
            done.write_text("{}")


@pytest.fixture
def fake_steps(monkeypatch):
    fake = FakeSteps()
    monkeypatch.setattr(paper, "run_step", fake)
    monkeypatch.setattr(self_play_loop, "run_step", fake)
    monkeypatch.setattr("transforms.stats.report.write_report", lambda output: None)
    return fake


def _train_command(fake):
    return next(c for name, c in fake.commands.items() if "fine-tune" in name)


# ---------------------------------------------------------------------------------------------------- paper

def test_the_paper_summary_counts_generated_pairs_only(tmp_path, fake_steps):
    out = tmp_path / "paper"
    assert paper.main([f"--output={out}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["generated_pairs"] == 4  # not the shards step's 10 (generated + original)
    assert summary["original_pairs"] == 6


def test_the_drivers_replace_their_summaries_whole(tmp_path, fake_steps):
    for main, out, argv in ((paper.main, tmp_path / "paper", []),
                            (self_play_loop.main, tmp_path / "loop", [f"--p3-dir={TINY_P3}"])):
        out.mkdir()
        for name in ("summary.json", "summary.md"):
            (out / name).write_text("old")
            os.link(out / name, tmp_path / f"{out.name}-{name}-as-a-reader-opened-it")
        assert main([f"--output={out}", *argv]) == 0
        for name in ("summary.json", "summary.md"):
            # Written to a new file and renamed over the old one: a reader (or a kill) never sees half a file.
            assert (tmp_path / f"{out.name}-{name}-as-a-reader-opened-it").read_text() == "old"
            assert (out / name).read_text() != "old"
        assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------------------- the fine-tune's resume

@pytest.mark.parametrize("main, argv, train", [
    (paper.main, [], "train"),
    (self_play_loop.main, [f"--p3-dir={TINY_P3}"], "round-0/train"),
])
def test_a_fine_tune_that_failed_before_its_first_checkpoint_is_not_resumed(tmp_path, fake_steps, main, argv,
                                                                            train):
    out = tmp_path / "out"
    (out / train).mkdir(parents=True)
    (out / train / "config.json").write_text('{"model": "a typo"}')  # what a fine-tune writes before it fails
    assert main([f"--output={out}", *argv]) == 0
    command = _train_command(fake_steps)
    assert "--resume" not in command
    assert not (out / train / "config.json").exists()  # cleared, so the corrected config is not refused


@pytest.mark.parametrize("main, argv, train", [
    (paper.main, [], "train"),
    (self_play_loop.main, [f"--p3-dir={TINY_P3}"], "round-0/train"),
])
def test_a_fine_tune_with_a_checkpoint_is_resumed(tmp_path, fake_steps, main, argv, train):
    out = tmp_path / "out"
    checkpoint = out / train / "stage-0-x" / "checkpoint-50"
    checkpoint.mkdir(parents=True)
    (checkpoint / "COMPLETE").write_text("")
    assert main([f"--output={out}", *argv]) == 0
    assert _train_command(fake_steps)[-1] == "--resume" and checkpoint.exists()


# ------------------------------------------------------------------------------------------ a seed per round

def test_every_round_draws_with_its_own_run_seed(tmp_path, fake_steps):
    out = tmp_path / "loop"
    assert self_play_loop.main([f"--output={out}", f"--p3-dir={TINY_P3}", "--rounds=3", "--run-seed=7"]) == 0
    seeds = [int(_option(fake_steps.commands[name], "run-seed")) for name in fake_steps.commands
             if "self-play with" in name]
    assert len(seeds) == 3 and len(set(seeds)) == 3
    assert seeds == [self_play_loop.round_seed(7, r) for r in range(3)]
    assert seeds != [self_play_loop.round_seed(8, r) for r in range(3)]
    summary = json.loads((out / "summary.json").read_text())
    last_epochs = [row for row in summary["rows"][1:] if row["epoch"] == row["epochs"]]  # one row per epoch
    assert summary["run_seed"] == 7 and [row["run_seed"] for row in last_epochs] == seeds


def test_every_round_trains_on_the_merged_pairs_of_the_rounds_so_far(tmp_path, fake_steps):
    out = tmp_path / "loop"
    assert self_play_loop.main([f"--output={out}", f"--p3-dir={TINY_P3}", "--rounds=2", "--run-seed=7"]) == 0
    rounds = [out / f"round-{r}" / "self-play" for r in range(2)]
    for r in range(2):
        name = f"round {r}: merge the verified pairs of rounds 0..{r}"
        merge = fake_steps.commands[name]
        assert [w for w in merge if w.startswith("--round=")] == [f"--round={sp}" for sp in rounds[:r + 1]]
        assert _option(merge, "output") == str(out / f"round-{r}" / "training-merged")
        assert _option(merge, "iteration") == str(r) and _option(merge, "run-seed") == "7"  # the loop's seed
        assert _option(merge, "example-cap") == ("25000" if r == 0 else "1000000")  # the round's own cap
        assert fake_steps.upstream[name] == [sp / "summary.json" for sp in rounds[:r + 1]]
        train_name = next(n for n in fake_steps.commands if n.startswith(f"round {r}: fine-tune"))
        stages = next(w for w in fake_steps.commands[train_name] if w.startswith("stages="))
        assert json.loads(stages[len("stages="):])[0]["data"] == str(
            out / f"round-{r}" / "training-merged" / "training" / "puzzles")  # the merged set, nothing else
        assert fake_steps.upstream[train_name] == [out / f"round-{r}" / "training-merged" / "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    last_epochs = [row for row in summary["rows"][1:] if row["epoch"] == row["epochs"]]  # one row per epoch
    assert [row["training_examples_so_far"] for row in last_epochs] == [2, 3]  # the merge's, not 2 + 2
    assert "| 3 |" in (out / "summary.md").read_text()


def test_a_round_without_merged_examples_trains_nothing(tmp_path, fake_steps, monkeypatch):
    real = fake_steps.__call__

    def no_examples(driver, name, command, log, done, **kwargs):
        real(driver, name, command, log, done, **kwargs)
        if "merge" in name:
            done.write_text(json.dumps({"training_examples": 0}))

    monkeypatch.setattr(self_play_loop, "run_step", no_examples)
    out = tmp_path / "loop"
    assert self_play_loop.main([f"--output={out}", f"--p3-dir={TINY_P3}"]) == 0
    assert not [n for n in fake_steps.commands if "fine-tune" in n]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"][1]["training_examples_so_far"] == 0 and summary["rows"][1]["model"] == "smollm2"


def test_the_loop_refuses_a_run_seed_in_the_self_play_arguments(capsys):
    with pytest.raises(SystemExit):
        self_play_loop.parse_args(["--output=x", f"--p3-dir={TINY_P3}",
                                   "--self-play-args=--num-prompts 2 --run-seed 3"])
    assert "--run-seed" in capsys.readouterr().err


def test_round_seeds_are_fixed_numbers():
    # Deterministic across processes and Python versions (sha256, not hash()): a re-run continues the same rounds.
    assert [self_play_loop.round_seed(0, r) for r in range(2)] == [921594002, 1972418603]
    assert all(0 <= self_play_loop.round_seed(b, r) < 2**31 for b in (0, 1, 2**40) for r in range(3))
