"""The self-play job on the fake engine: a scripted completion that is a P3 test puzzle (renamed, reformatted) is
refused by the filter stage as ``p3_test_puzzle``, counted in the manifest and dead-lettered, and never reaches the
training examples; without ``--p3-dir`` there is no index and the same puzzle is trained on (the control)."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from beam_pipelines.self_play import run as run_self_play

TEST_PUZZLE = "Study_6:0"  # def sat(i: int): return i % 123 == 4 and i > 10 ** 10


def _rows(directory):
    return [row for f in sorted(directory.glob("*.parquet")) for row in pq.read_table(f).to_pylist()]


def _script(sat: str) -> dict:
    # The seed preset's generation prompt ends with "def f5(": the model writes f5's parameters on, then its g5.
    assert sat.startswith("def sat(i: int):")
    reproduced = sat.replace("def sat(i: int):", "num: int) -> bool:  # my own puzzle").replace("i ", "num ")
    assert "num % 123 == 4 and num > 10 ** 10" in reproduced
    return {"rules": [
        {"prompt_endswith": "):", "texts": ["\n    return 111\n", "\n    return 4 + 123 * 10 ** 10\n"]},
        {"prompt_endswith": "", "texts": [
            reproduced + "\n\ndef g5():\n    return 4 + 123 * 10 ** 10\n",
            "x: int) -> bool:\n    return x * x == 12321 and x > 0\n\ndef g5():\n    return 111\n",
        ]},
    ]}


@pytest.mark.heavy
def test_a_p3_test_puzzle_the_model_writes_is_counted_dead_lettered_and_never_trained_on(tmp_path, shared_data):
    p3_dir = shared_data / "p3"
    sat = next(r["sat"] for r in json.loads((p3_dir / "puzzles.json").read_text()) if r["name"] == TEST_PUZZLE)
    script = tmp_path / "script.json"
    script.write_text(json.dumps(_script(sat)))
    args = ["--engine=fake", f"--model={script}", "--puzzle-preset=seed", "--num-prompts=2",
            "--samples-per-prompt=6", "--solve-attempts=6", "--trivial-reject-rate=1.0"]

    summary = run_self_play(args + [f"--p3-dir={p3_dir}", f"--output={tmp_path / 'with'}"])
    assert summary["balanced"], summary
    manifest = json.loads((tmp_path / "with" / "manifest.json").read_text())
    assert manifest["p3_test_puzzles_indexed"] == 1009
    rejected = _rows(tmp_path / "with" / "rejected")
    refused = [r for r in rejected if r["reason"] == "p3_test_puzzle"]
    assert refused and {(r["stage"], r["detail"]) for r in refused} == {
        ("self_play.filter", f"P3 test puzzle {TEST_PUZZLE}")}
    assert manifest["stages"]["filter"]["rejected"]["p3_test_puzzle"] == len(refused)
    training = _rows(tmp_path / "with" / "training" / "puzzles")
    assert training and all("x * x == 12321" in t["response"] for t in training), training  # the other one
    assert not any("% 123 == 4" in t["response"] for t in training)
    assert not any("% 123 == 4" in p["sat"] for p in _rows(tmp_path / "with" / "puzzles"))

    control = run_self_play(args + [f"--output={tmp_path / 'without'}"])
    assert control["balanced"], control
    manifest = json.loads((tmp_path / "without" / "manifest.json").read_text())
    assert manifest["p3_test_puzzles_indexed"] == 0 and "p3_test_puzzle" not in manifest["stages"]["filter"]["rejected"]
    assert any("% 123 == 4" in t["response"] for t in _rows(tmp_path / "without" / "training" / "puzzles"))
