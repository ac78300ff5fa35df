"""The merge job of the self-play loop (beam_pipelines/self_play_merge.py): self-play round directories written
here by hand (their solved puzzles as Parquet shards, their manifest) -> one training set, its manifest and its
summary."""
from __future__ import annotations

import json
import random
import tracemalloc

import pytest

from beam_pipelines.self_play_merge import SHARD_RECORDS
from beam_pipelines.self_play_merge import main as merge_main
from schemas.records import RecordKind
from tests.transforms.selfplay.test_merge import oracle, random_records
from transforms.io.parquet import (
    read_index,
    read_rows,
    record_digest,
    sort_key,
    verify_shards,
    write_shards,
    write_sorted_shards,
)

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


# --------------------------------------------------------------------------- streamed, and as it was in memory


def test_the_sorted_stream_writes_the_shards_of_write_shards(tmp_path):
    rows = [{"id": f"example-{i}", "instruction": "", "response": f"text {i}", "source": "self_play",
             "language": "python", "snippet_id": None, "provenance": "{}", "source_uri": "u", "source_row": i,
             "stage": "shards", "messages": []} for i in range(23)]
    for seed, total, shard_records in ((3, 23, 5), (3, 20, 5), (None, 7, 100), (0, 0, 5), (1, 1, 1)):
        expected = write_shards(rows[:total], str(tmp_path / "a"), RecordKind.TRAINING_EXAMPLE, seed=seed,
                                shard_records=shard_records)
        ordered = sorted(rows[:total], key=lambda r: sort_key(r["id"], seed, record_digest(r)))
        got = write_sorted_shards(iter(ordered), total, str(tmp_path / "b"), RecordKind.TRAINING_EXAMPLE,
                                  seed=seed, shard_records=shard_records)
        assert got == expected and len(got["shards"]) == max(1, -(-total // shard_records))
        for shard in got["shards"]:
            assert (tmp_path / "a" / shard["path"]).read_bytes() == (tmp_path / "b" / shard["path"]).read_bytes()
    ordered = sorted(rows, key=lambda r: sort_key(r["id"], 3))
    for records, total in ((ordered[::-1], 23), (ordered, 22), (ordered, 24)):
        with pytest.raises(ValueError):
            write_sorted_shards(iter(records), total, str(tmp_path / "c"), RecordKind.TRAINING_EXAMPLE, seed=3,
                                shard_records=5)
    assert not (tmp_path / "c" / "shards.json").exists()


def test_the_job_writes_what_the_in_memory_merge_and_writer_wrote(tmp_path):
    # Random rounds (puzzles in several rounds, solutions found again, equal examples): the shards, manifest and
    # summary are those of the merge as it was (every record in memory, then write_shards), whatever the order
    # of the rounds and of their records.
    rng = random.Random(11)
    records = [r for _ in range(4) for r in random_records(rng)]
    by_round = {}
    for r in {(r["sat"], r["round"], r["source_uri"], r["source_row"], r["name"]): r for r in records}.values():
        by_round.setdefault(r["round"], []).append(r)
    rounds = [write_round(tmp_path / f"round-{i}", i, [{**solved(r["sat"], r["solutions"], r["source_row"]),
                                                        "name": r["name"], "source_uri": r["source_uri"]}
                                                       for r in rng.sample(rs, len(rs))])
              for i, rs in sorted(by_round.items())]
    inputs = [{**r, "round": i} for i, d in zip(sorted(by_round), rounds) for r in read_rows(f"{d}/puzzles")]
    for cap in (5, 1_000_000):
        expected, counts = oracle(inputs, max_solutions=8, cap=cap, seed=4, training_format="raw")
        assert counts["duplicate_examples"] and counts["duplicate_solutions"]
        index = write_shards(expected, str(tmp_path / f"expected-{cap}"), RecordKind.TRAINING_EXAMPLE, seed=4,
                             shard_records=SHARD_RECORDS)
        for order in (rounds, rounds[::-1]):
            out = tmp_path / f"merged-{cap}-{order[0][-1]}"
            assert run(order, out, f"--example-cap={cap}", "--run-seed=4") == 0
            assert read_index(str(out / "training" / "puzzles"))["shards"] == index["shards"]
            summary = json.loads((out / "summary.json").read_text())
            assert {k: summary[k] for k in counts if k != "built"} == {k: n for k, n in counts.items() if k != "built"}
            assert summary["solved_puzzles_in"] == len(inputs) and summary["training_examples"] == len(expected)


def many_rounds(directory, puzzles: int) -> list[str]:
    """Two rounds of ``puzzles`` puzzles each, four solutions each, a tenth of them in both rounds (round 1's
    first tenth is round 0's last)."""
    def one(i: int) -> dict:
        sat = f"def f(x: int):\n    return x + {i} == {i + 4}  # {'p' * (i % 50)}"
        return solved(sat, [f"def g():\n    return {k} + {4 - k}  # {'s' * (i % 40)}" for k in range(4)], i)

    return [write_round(directory / "round-0", 0, [one(i) for i in range(puzzles)]),
            write_round(directory / "round-1", 1, [one(i) for i in range(puzzles - puzzles // 10, 2 * puzzles)])]


def peak_allocation(work, *args, **kwargs) -> int:
    """The peak of Python's allocations while ``work(*args, **kwargs)`` runs (tracemalloc: SQLite's page cache
    and sorters, bounded by ``merge.CACHE_KIB``, and Arrow's buffers are not counted)."""
    tracemalloc.start()
    try:
        work(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_job_holds_no_more_for_ten_times_the_records(tmp_path):
    # 60 and 600 puzzles a round (4 solutions each, a tenth in both rounds: 480 and 4,800 examples) under one
    # cap of 400, so the writer has the same rows to write and the difference is the merge's: it holds none of
    # the records or examples (the merge as it was held them all, some 2 KB each: 1.4 MB against 9.6 MB).
    run(many_rounds(tmp_path / "warm", 10), tmp_path / "warm-out")  # imports and caches, not counted
    sizes = {}
    for n in (60, 600):
        rounds = many_rounds(tmp_path / f"in-{n}", n)
        sizes[n] = peak_allocation(run, rounds, tmp_path / f"out-{n}", "--run-seed=1", "--example-cap=400")
        summary = json.loads((tmp_path / f"out-{n}" / "summary.json").read_text())
        assert summary["training_examples"] == 400 and summary["pairs_in"] == 4 * (2 * n + n // 10)
    assert sizes[600] <= 1.3 * sizes[60], sizes


def test_the_sorted_stream_holds_one_row_group(tmp_path):
    # 1,100 and 6,600 rows (about one and six row groups) into one shard: the peak is that of one row group.
    def rows(n):
        made = ({"id": f"example-{i}", "instruction": "", "response": f"text {i} " * 20, "source": "self_play",
                 "language": "python", "snippet_id": None, "provenance": "{}", "source_uri": "u", "source_row": i,
                 "stage": "shards", "messages": []} for i in range(n))
        return sorted(made, key=lambda r: sort_key(r["id"], 5))

    sizes = {}
    for n in (1_100, 6_600):
        ordered = rows(n)
        sizes[n] = peak_allocation(write_sorted_shards, iter(ordered), n, str(tmp_path / f"out-{n}"),
                                   RecordKind.TRAINING_EXAMPLE, seed=5, shard_records=SHARD_RECORDS)
        del ordered
    assert sizes[6_600] <= 1.3 * sizes[1_100], sizes
