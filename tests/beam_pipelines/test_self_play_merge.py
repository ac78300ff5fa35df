"""The merge job of the self-play loop (beam_pipelines/self_play_merge.py): self-play round directories written
here by hand (their solved puzzles as Parquet shards, their manifest) -> one training set, its manifest and its
summary."""
from __future__ import annotations

import json

from beam_pipelines.self_play_merge import main as merge_main
from schemas.records import RecordKind
from transforms.io.parquet import read_index, read_rows, verify_shards, write_shards

F1 = "def f(x: int):\n    return x + 1 == 5"
F2 = 'def f(s: str, n=3):\n    return s * n == "ababab"'


def text(f: str, g: str) -> str:
    return f"{f}\n\n{g}\n\nassert f(g())\n\n"


def solved(sat: str, solutions: list[str], row: int) -> dict:
    return {"id": f"puzzle-{row}", "name": f"generated/prompt-0#{row}", "sat": sat, "answer_type": "int",
            "trivial_tested": True, "sol": solutions[0] if solutions else None, "solutions": solutions,
            "attempts": 4, "verified_attempts": len(solutions), "origin": "generated", "preset": "paper",
            "prompt_index": 0, "sample_index": row, "examples": [], "model": "m", "seed": 1,
            "source_uri": "self-play:prompt-0", "source_row": row, "stage": "self_play.select"}


def write_round(directory, iteration: int, puzzles: list[dict], *, training_format="raw", max_solutions=8,
                puzzle_preset="paper"):
    write_shards(puzzles, str(directory / "puzzles"), RecordKind.PUZZLE, seed=None, shard_records=100_000)
    settings = {"iteration": iteration, "training_format": training_format, "max_solutions": max_solutions,
                "example_cap": 25_000, "run_seed": 100 + iteration}
    (directory / "manifest.json").write_text(json.dumps({"job": "self-play", "puzzle_preset": puzzle_preset,
                                                         "settings": settings}))
    (directory / "summary.json").write_text(json.dumps({"training_examples": sum(len(p["solutions"])
                                                                                  for p in puzzles)}))
    return str(directory)


def two_rounds(tmp_path) -> list[str]:
    return [write_round(tmp_path / "round-0", 0, [solved(F1, ["def g():\n    return 4"], 0),
                                                  solved(F2, ['def g(n=3):\n    return "ab"'], 1)]),
            write_round(tmp_path / "round-1", 1, [solved(F1, ["def g():\n    return 4",
                                                              "def g():\n    return 2+2"], 3)])]


def run(rounds, out, *extra) -> int:
    return merge_main([*(f"--round={r}" for r in rounds), f"--output={out}", *extra])


def test_the_rounds_become_one_training_set_with_its_counts(tmp_path):
    out = tmp_path / "merged"
    assert run(two_rounds(tmp_path), out, "--iteration=1", "--run-seed=7") == 0
    verify_shards(str(out / "training" / "puzzles"))
    rows = read_rows(str(out / "training" / "puzzles"))
    assert sorted(r["response"] for r in rows) == sorted([text(F1, "def g():\n    return 4"),
                                                          text(F1, "def g():\n    return 2+2"),
                                                          text(F2, 'def g(n=3):\n    return "ab"')])
    assert read_index(str(out / "training" / "puzzles"))["seed"] == 7  # rows in the order of the loop's seed
    # Each row names the round that found its pair (in its provenance, a JSON string of the shards' schema).
    assert sorted((json.loads(r["provenance"])["iteration"], r["source_row"]) for r in rows) == [(0, 0), (0, 1), (1, 3)]
    summary = json.loads((out / "summary.json").read_text())
    assert {k: summary[k] for k in ("pairs_in", "duplicate_solutions", "over_solution_cap", "duplicate_examples",
                                    "over_example_cap", "training_examples", "example_cap")} == {
        "pairs_in": 4, "duplicate_solutions": 1, "over_solution_cap": 0, "duplicate_examples": 0,
        "over_example_cap": 0, "training_examples": 3, "example_cap": 1_000_000}  # iteration 1's cap
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["balanced"] and manifest["job"] == "self-play-merge"
    assert manifest["stages"]["merge_solutions"]["rejected"] == {"duplicate_solution": 1}
    assert [r["iteration"] for r in manifest["rounds"]] == [0, 1]


def test_the_cap_holds_for_the_union(tmp_path):
    out = tmp_path / "merged"
    assert run(two_rounds(tmp_path), out, "--example-cap=2") == 0
    assert len(read_rows(str(out / "training" / "puzzles"))) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["training_cap"]["rejected"] == {"over_example_cap": 1} and manifest["balanced"]


def test_the_order_of_the_rounds_changes_no_byte(tmp_path):
    rounds = two_rounds(tmp_path)
    assert run(rounds, tmp_path / "a", "--run-seed=3") == 0
    assert run(rounds[::-1], tmp_path / "b", "--run-seed=3") == 0
    assert run(rounds, tmp_path / "c", "--run-seed=4") == 0
    shards = {name: read_index(str(tmp_path / name / "training" / "puzzles"))["shards"] for name in "abc"}
    assert [s["sha256"] for s in shards["a"]] == [s["sha256"] for s in shards["b"]]
    assert [s["sha256"] for s in shards["a"]] != [s["sha256"] for s in shards["c"]]  # the seed orders the rows


def test_an_empty_round_is_fine(tmp_path):
    rounds = [write_round(tmp_path / "round-0", 0, []), write_round(tmp_path / "round-1", 1,
                                                                    [solved(F1, ["def g():\n    return 4"], 0)])]
    assert run(rounds[:1], tmp_path / "none") == 0
    assert json.loads((tmp_path / "none" / "summary.json").read_text())["training_examples"] == 0
    assert read_rows(str(tmp_path / "none" / "training" / "puzzles")) == []
    assert run(rounds, tmp_path / "one") == 0
    assert [r["response"] for r in read_rows(str(tmp_path / "one" / "training" / "puzzles"))] == [
        text(F1, "def g():\n    return 4")]


def test_rounds_of_other_presets_formats_or_limits_are_refused(tmp_path, capsys):
    first = write_round(tmp_path / "round-0", 0, [solved(F1, ["def g():\n    return 4"], 0)])
    other = write_round(tmp_path / "round-1", 1, [], training_format="instruction")
    assert run([first, other], tmp_path / "merged") == 2
    assert "training_format" in capsys.readouterr().err and not (tmp_path / "merged" / "summary.json").exists()
    fewer = write_round(tmp_path / "round-2", 2, [], max_solutions=4)
    assert run([first, fewer], tmp_path / "merged") == 2
    assert "max_solutions" in capsys.readouterr().err
    seed = write_round(tmp_path / "round-3", 3, [], puzzle_preset="seed")
    assert run([first, seed], tmp_path / "merged") == 2
    assert "differ in puzzle_preset" in capsys.readouterr().err
    (tmp_path / "round-2" / "manifest.json").write_text(json.dumps({"job": "self-play", "settings": {}}))
    assert run([first, fewer], tmp_path / "merged") == 2
    assert "no iteration, max_solutions, training_format, puzzle_preset" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "round-3" / "manifest.json").read_text())
    del manifest["puzzle_preset"]  # a manifest of its settings only, without the preset its puzzles were made with
    (tmp_path / "round-3" / "manifest.json").write_text(json.dumps(manifest))
    assert run([first, seed], tmp_path / "merged") == 2
    assert "round-3/manifest.json is not a self-play job's manifest (it records no puzzle_preset)" in (
        capsys.readouterr().err)
    assert not (tmp_path / "merged" / "summary.json").exists()


def test_the_cap_is_the_one_of_the_highest_iteration_unless_one_is_given(tmp_path):
    rounds = two_rounds(tmp_path)
    for name, argv, cap in (("default", [], 1_000_000), ("reversed", [], 1_000_000),
                            ("given", ["--iteration=0"], 25_000), ("cap", ["--example-cap=2"], 2)):
        given = rounds[::-1] if name == "reversed" else rounds
        assert run(given, tmp_path / name, *argv) == 0
        assert json.loads((tmp_path / name / "summary.json").read_text())["example_cap"] == cap
        settings = json.loads((tmp_path / name / "manifest.json").read_text())["settings"]
        assert settings["iteration"] == (0 if name == "given" else 1) and settings["example_cap"] == cap
        assert settings["puzzle_preset"] == "paper"


def test_rounds_of_one_iteration_are_refused(tmp_path, capsys):
    first, second = two_rounds(tmp_path)
    assert run([first, second, first], tmp_path / "merged") == 2  # one round given twice
    err = capsys.readouterr().err
    assert err.startswith("self-play-merge: the rounds must be of distinct iterations")
    assert f"iteration 0: {first}, {first}" in err
    again = write_round(tmp_path / "round-1-again", 1, [solved(F2, ['def g(n=3):\n    return "ab"'], 2)])
    assert run([first, second, again], tmp_path / "merged", "--iteration=1") == 2  # two runs of one iteration
    assert f"iteration 1: {second}, {again}" in capsys.readouterr().err
    assert not (tmp_path / "merged").exists()
