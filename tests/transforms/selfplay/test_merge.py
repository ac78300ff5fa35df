"""Merging the verified pairs of self-play rounds into one training set (transforms/selfplay/merge.py). The puzzle
records and the expected example texts are written out here, in the reference's format
(f, blank line, g, blank line, ``assert f(g())``), not produced by the code under test."""
from __future__ import annotations

import json
import random

import pytest

from schemas.records import content_id
from transforms.io.training_examples import pick_duplicate
from transforms.selfplay import plans
from transforms.selfplay import puzzles as seed_format
from transforms.selfplay.merge import merge_out_of_core, merge_rounds
from transforms.selfplay.preset import load_preset

F1 = "def f(x: int):\n    return x + 1 == 5"
F2 = 'def f(s: str, n=3):\n    return s * n == "ababab"'
BIG = 1_000_000


def puzzle(sat: str, solutions: list[str], round_: int, row: int = 0) -> dict:
    return {"id": f"puzzle-{row}", "name": f"generated/prompt-0#{row}", "sat": sat, "solutions": solutions,
            "source_uri": "self-play:prompt-0", "source_row": row, "round": round_}


def merge(records, *, cap=BIG, seed=0, max_solutions=8, training_format="raw"):
    return merge_rounds(records, max_solutions=max_solutions, cap=cap, seed=seed, preset=load_preset(),
                        training_format=training_format, template=seed_format.load_self_play_prompt())


def texts(merged) -> list[str]:
    return [e["response"] for e in merged.examples]


def spaced(k: int) -> str:
    """A solution of F1 whose length grows with k (k spaces after ``return``)."""
    return "def g():\n    return" + " " * k + "4"


def spaced_text(k: int) -> str:
    return "def f(x: int):\n    return x + 1 == 5\n\ndef g():\n    return" + " " * k + "4\n\nassert f(g())\n\n"


def test_a_pair_found_in_two_rounds_is_trained_once():
    merged = merge([puzzle(F1, ["def g():\n    return 4"], 0),
                    puzzle(F1, ["def g():\n    return 4", "def g():\n    return 2 + 2"], 1, row=5)])
    assert sorted(texts(merged)) == sorted([
        "def f(x: int):\n    return x + 1 == 5\n\ndef g():\n    return 4\n\nassert f(g())\n\n",
        "def f(x: int):\n    return x + 1 == 5\n\ndef g():\n    return 2 + 2\n\nassert f(g())\n\n",
    ])
    assert (merged.pairs_in, merged.duplicate_solutions, merged.over_solution_cap) == (3, 1, 0)
    # The pair found in both rounds comes from round 0's record; the one only round 1 found from round 1's.
    rows = {e["response"].split("\n")[4]: e["source_row"] for e in merged.examples}
    assert rows == {"    return 4": 0, "    return 2 + 2": 5}


def test_a_puzzle_keeps_its_eight_shortest_solutions_across_rounds():
    round0 = puzzle(F1, [spaced(k) for k in (1, 3, 5, 7, 10)], 0)
    round1 = puzzle(F1, [spaced(k) for k in (2, 4, 6, 8, 9)], 1)
    merged = merge([round0, round1])
    assert sorted(texts(merged)) == sorted(spaced_text(k) for k in range(1, 9))
    assert (merged.pairs_in, merged.duplicate_solutions, merged.over_solution_cap) == (10, 0, 2)
    # Each round alone keeps all five of its own.
    assert len(merge([round0]).examples) == 5 and len(merge([round1]).examples) == 5


def test_the_solution_limit_is_the_merge_setting():
    merged = merge([puzzle(F1, [spaced(k) for k in (3, 1, 2)], 0)], max_solutions=2)
    assert sorted(texts(merged)) == sorted([spaced_text(1), spaced_text(2)])


def test_the_cap_applies_to_the_union_of_the_rounds():
    rounds = [puzzle(F1, [spaced(k) for k in (1, 2, 3)], 0), puzzle(F2, ['def g(n=3):\n    return "ab"',
                                                                         'def g(n=3):\n    return "a" + "b"',
                                                                         'def g(n=3):\n    return "ba"[::-1]'], 1)]
    everything = merge(rounds)
    assert len(everything.examples) == 6 and everything.over_example_cap == 0
    capped = merge(rounds, cap=4)
    assert len(capped.examples) == 4 and capped.over_example_cap == 2  # not 4 of each round
    assert capped.examples == everything.examples[:4]  # the cap keeps the first in the seeded order
    assert len(merge(rounds, cap=0).examples) == 0


def test_the_order_depends_on_the_seed_and_not_on_the_order_of_the_input():
    records = [puzzle(F1, [spaced(k) for k in (1, 3, 5)], 0),
               puzzle(F1, [spaced(k) for k in (2, 4, 5)], 1, row=7),
               puzzle(F2, ['def g(n=3):\n    return "ab"', 'def g(n=3):\n    return "ba"[::-1]'], 0, row=2),
               puzzle(F2, ['def g(n=3):\n    return "ab"', 'def g(n=3):\n    return "a" + "b"'], 2, row=1)]
    first = merge(records, seed=3)
    for _ in range(5):
        shuffled = random.Random(_).sample(records, len(records))
        assert merge(shuffled, seed=3).examples == first.examples  # same records, provenance and order
    orders = {tuple(e["id"] for e in merge(records, seed=s).examples) for s in range(6)}
    assert len(orders) > 1 and {frozenset(o) for o in orders} == {frozenset(e["id"] for e in first.examples)}


def test_equal_lengths_are_ordered_by_text_whatever_the_round():
    # Two solutions of one length compete for the last place: the smaller text wins from either round.
    a, b = "def g():\n    return 4+0", "def g():\n    return 0+4"
    for records in ([puzzle(F1, [a], 0), puzzle(F1, [b], 1)], [puzzle(F1, [b], 0), puzzle(F1, [a], 1)]):
        merged = merge(records, max_solutions=1)
        assert texts(merged) == ["def f(x: int):\n    return x + 1 == 5\n\ndef g():\n    return 0+4\n\n"
                                 "assert f(g())\n\n"]


def test_solutions_that_give_one_text_are_one_example():
    # g is stripped of surrounding whitespace, as the reference does: two bodies, one example.
    merged = merge([puzzle(F1, ["def g():\n    return 4"], 0), puzzle(F1, ["def g():\n    return 4   "], 1)])
    assert texts(merged) == ["def f(x: int):\n    return x + 1 == 5\n\ndef g():\n    return 4\n\nassert f(g())\n\n"]
    assert (merged.pairs_in, merged.duplicate_solutions, merged.built, merged.duplicate_examples) == (2, 0, 2, 1)


def test_each_example_names_the_round_that_found_it_and_keeps_its_id():
    # Both rounds' records come from prompt-0, row 0: only the iteration in the provenance tells them apart.
    round0 = puzzle(F1, ["def g():\n    return 4"], 0)
    round1 = puzzle(F1, ["def g():\n    return 4", "def g():\n    return 2 + 2"], 1)
    merged = merge([round1, round0])
    by_body = {e["response"].split("\n")[4]: e for e in merged.examples}
    assert {b: json.loads(e["provenance"]) for b, e in by_body.items()} == {
        "    return 4": {"puzzle": "generated/prompt-0#0", "format": "raw", "iteration": 0},
        "    return 2 + 2": {"puzzle": "generated/prompt-0#0", "format": "raw", "iteration": 1}}
    assert {(e["source_uri"], e["source_row"]) for e in merged.examples} == {("self-play:prompt-0", 0)}
    # The id is the one a round's own training set gives the same example: the text's, never the round's.
    own = plans.solved_puzzle_examples(round1, load_preset(), "raw", seed_format.load_self_play_prompt())
    assert {e["id"] for e in own} == {e["id"] for e in merged.examples}
    assert all("iteration" not in json.loads(e["provenance"]) for e in own)  # a round's own set: as before
    assert by_body["    return 4"]["id"] == content_id("training_example", "self_play", "",
                                                         by_body["    return 4"]["response"])


def test_equal_examples_of_several_rounds_keep_the_earliest_round():
    # One text from two bodies, found in rounds 10 and 2 (10 sorts before 2 as text): round 2's is kept.
    merged = merge([puzzle(F1, ["def g():\n    return 4"], 10), puzzle(F1, ["def g():\n    return 4   "], 2)])
    (example,) = merged.examples
    assert json.loads(example["provenance"])["iteration"] == 2 and merged.duplicate_examples == 1


def test_the_counts_balance():
    merged = merge([puzzle(F1, [spaced(k) for k in (1, 2, 3, 4, 5)], 0),
                    puzzle(F1, [spaced(k) for k in (5, 6, 7, 8, 9, 10)], 1)], cap=3)
    assert merged.counts() == {
        "merge_solutions|in": 11, "merge_solutions|out": 8, "merge_solutions|rejected|duplicate_solution": 1,
        "merge_solutions|rejected|over_solution_cap": 2, "training_dedup|in": 8, "training_dedup|out": 8,
        "training_cap|in": 8, "training_cap|out": 3}


def test_no_rounds_and_empty_rounds_give_no_examples():
    assert merge([]).examples == []
    assert merge([puzzle(F1, [], 0)]).examples == []


def test_the_instruction_format_puts_the_puzzle_in_the_instruction():
    merged = merge([puzzle(F2, ['def g(n=3):\n    return "ab"'], 0)], training_format="instruction")
    (example,) = merged.examples
    assert F2 in example["instruction"] and 'def g(n=3):\n    return "ab"' in example["response"]
    with pytest.raises(ValueError):
        merge([puzzle(F2, ['def g(n=3):\n    return "ab"'], 0)], training_format="chat")


# --------------------------------------------------------------------------- the merge against an in-memory oracle


def oracle(records, *, max_solutions, cap, seed, training_format):
    """The merge as it was written before it went out of core: every record and example in memory, each step a
    dict and a sort (records that tie in (round, source_uri, source_row, name) never occur below)."""
    preset, template = load_preset(), seed_format.load_self_play_prompt()
    by_puzzle = {}
    for record in records:
        by_puzzle.setdefault(plans.puzzle_id(record["sat"]), []).append(record)
    solved, pairs_in, duplicates, over = [], 0, 0, 0
    for key in sorted(by_puzzle):
        group = sorted(by_puzzle[key], key=lambda r: (r["round"], r["source_uri"], r["source_row"], r["name"]))
        holders = {}
        for record in group:
            for g in record["solutions"]:
                pairs_in += 1
                if g in holders:
                    duplicates += 1
                else:
                    holders[g] = record
        kept = sorted(holders, key=lambda g: (len(g), g))[:max_solutions]
        over += len(holders) - len(kept)
        per_record = {}
        for g in kept:
            per_record.setdefault(id(holders[g]), []).append(g)
        solved += [{**r, "solutions": per_record.pop(id(r))} for r in group if id(r) in per_record]
    built = [(p["round"], e) for p in solved
             for e in plans.solved_puzzle_examples(p, preset, training_format, template, p["round"])]
    by_id = {}
    for round_, example in built:
        by_id.setdefault(example["id"], []).append((round_, example))
    distinct = []
    for group in by_id.values():
        earliest = min(round_ for round_, _ in group)
        distinct.append(pick_duplicate([e for round_, e in group if round_ == earliest])[0])
    ordered = sorted(distinct, key=lambda e: plans.example_sort_key(e, seed))
    counts = {"pairs_in": pairs_in, "duplicate_solutions": duplicates, "over_solution_cap": over,
              "built": len(built), "duplicate_examples": len(built) - len(distinct),
              "over_example_cap": max(0, len(distinct) - cap)}
    return ordered[:cap], counts


SATS = [F1, F2, "def f(li: list, n=3):\n    return len(li) == n", "def f(x: int):\n    return x * 2 == 8"]


def random_records(rng: random.Random) -> list[dict]:
    """Records of a few puzzles over rounds 0, 1, 2 and 10 (10 sorts before 2 as text): the same puzzle in
    several rounds and rows, solutions found again (in other rounds and twice in one record), solutions of one
    length, and bodies that differ only in trailing spaces (one example from several rounds)."""
    records, taken = [], set()
    for _ in range(rng.randint(0, 18)):
        sat = rng.choice(SATS)
        round_ = rng.choice((0, 1, 2, 10))
        row, uri = rng.randint(0, 1), rng.choice(("self-play:prompt-0", "self-play:prompt-1"))
        name = f"generated/prompt-{uri[-1]}#{row}" + rng.choice(("", "b"))  # one row, two names: provenances
        if (sat, round_, uri, row, name) in taken:
            continue
        taken.add((sat, round_, uri, row, name))
        header = "def g():" if "x: int" in sat else "def g(n=3):"
        bodies = [f"\n    return {a}+{b}" for a, b in ((4, 0), (0, 4), (1, 3), (3, 1), (2, 2), (12, 0))]
        bodies += ["\n    return  4", "\n    return [1, 2]"]
        fours = rng.sample(["\n    return 4", "\n    return 4   ", "\n    return 4 "], rng.choice((0, 1, 1, 2)))
        solutions = [header + b for b in rng.sample(bodies, rng.randint(0, 5)) + fours]
        if solutions and rng.random() < 0.2:
            solutions.append(rng.choice(solutions))
        records.append({"id": f"puzzle-{rng.randint(0, 99)}", "name": name, "sat": sat, "solutions": solutions,
                        "source_uri": uri, "source_row": row, "round": round_})
    return records


def random_cases(n: int = 40):
    """(records, max_solutions, seed, training_format) of ``n`` random merges, the same on every call."""
    rng = random.Random(20261205)
    for _ in range(n):
        yield random_records(rng), rng.randint(1, 5), rng.randint(0, 3), rng.choice(("raw", "instruction"))


def test_the_merge_is_the_in_memory_merge_on_random_rounds():
    rng = random.Random(1)
    seen_caps = set()
    for case, (records, max_solutions, seed, training_format) in enumerate(random_cases()):
        expected_all, _ = oracle(records, max_solutions=max_solutions, cap=BIG, seed=seed,
                                 training_format=training_format)
        n = len(expected_all)
        for cap in sorted({0, 1, max(0, n - 1), n, n + 3, BIG}):
            expected, counts = oracle(records, max_solutions=max_solutions, cap=cap, seed=seed,
                                      training_format=training_format)
            shuffled = rng.sample(records, len(records))
            merged = merge(shuffled, cap=cap, seed=seed, max_solutions=max_solutions,
                           training_format=training_format)
            assert merged.examples == expected, (case, cap)
            assert {k: getattr(merged, k) for k in counts} == counts, (case, cap)
            assert merged.kept == len(expected) and merged.records_in == len(records)
            seen_caps.add((cap < n, cap > n))
    assert seen_caps == {(True, False), (False, False), (False, True)}  # caps under, at and over the count


def test_the_random_rounds_hold_what_the_differential_test_needs():
    duplicate_solutions = duplicate_examples = over_solution_cap = across_rounds = ties = 0
    for records, max_solutions, seed, training_format in random_cases():
        _, counts = oracle(records, max_solutions=max_solutions, cap=BIG, seed=seed, training_format=training_format)
        duplicate_solutions += counts["duplicate_solutions"] > 0
        duplicate_examples += counts["duplicate_examples"] > 0
        over_solution_cap += counts["over_solution_cap"] > 0
        rounds, lengths = {}, {}
        for r in records:
            rounds.setdefault(r["sat"], set()).add(r["round"])
            for g in set(r["solutions"]):
                lengths.setdefault((r["sat"], len(g)), set()).add(g)
        across_rounds += any(len(v) > 1 for v in rounds.values())
        ties += any(len(v) > 1 for v in lengths.values())
    assert min(duplicate_solutions, duplicate_examples, over_solution_cap, across_rounds, ties) >= 8


def test_the_streamed_write_order_is_the_shards_order():
    rng = random.Random(7)
    records = [r for _ in range(6) for r in random_records(rng) if r["round"] != 10]
    records = list({(r["sat"], r["round"], r["source_uri"], r["source_row"]): r for r in records}.values())
    expected, _ = oracle(records, max_solutions=3, cap=5, seed=2, training_format="raw")
    with merge_out_of_core(iter(records), max_solutions=3, cap=5, seed=2, preset=load_preset(),
                           training_format="raw", template=seed_format.load_self_play_prompt(),
                           write_key=lambda e: e["id"][::-1].encode()) as merged:
        assert list(merged.examples()) == expected
        assert list(merged.examples_in_write_order()) == sorted(expected, key=lambda e: e["id"][::-1])


def test_records_that_tie_in_round_source_and_name_give_one_result_in_any_order():
    # Two records of one puzzle, one round and one row (the oracle's order would be the input's): the content
    # decides which holds the solution both have.
    a = puzzle(F1, ["def g():\n    return 4", "def g():\n    return 2+2"], 0)
    b = {**puzzle(F1, ["def g():\n    return 4"], 0), "id": "puzzle-other"}
    assert merge([a, b]).examples == merge([b, a]).examples
    assert merge([a, b]).counts() == merge([b, a]).counts()


def test_equal_examples_of_one_round_and_row_keep_the_first_provenance():
    # Two records of one puzzle, round and row under two names, each with a body of one text: the example is
    # kept once, with the provenance that sorts first (as pick_duplicate chooses), in any order.
    a = {**puzzle(F1, ["def g():\n    return 4 "], 0), "name": "generated/prompt-0#0"}
    b = {**puzzle(F1, ["def g():\n    return 4"], 0), "name": "generated/prompt-0#0b"}
    expected, counts = oracle([a, b], max_solutions=8, cap=BIG, seed=0, training_format="raw")
    assert counts["duplicate_examples"] == 1 and json.loads(expected[0]["provenance"])["puzzle"] == a["name"]
    assert merge([a, b]).examples == merge([b, a]).examples == expected


def test_the_temporary_database_is_removed(tmp_path):
    with merge_out_of_core([puzzle(F1, ["def g():\n    return 4"], 0)], max_solutions=8, cap=BIG, seed=0,
                           preset=load_preset(), training_format="raw", template=seed_format.load_self_play_prompt(),
                           directory=str(tmp_path)) as merged:
        assert len(list(tmp_path.iterdir())) == 1 and merged.kept == 1
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):
        with merge_out_of_core([], max_solutions=0, cap=BIG, seed=0, preset=load_preset(), training_format="raw",
                               template=seed_format.load_self_play_prompt(), directory=str(tmp_path)):
            pass
    assert list(tmp_path.iterdir()) == []
