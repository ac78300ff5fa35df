"""The training set of self-play round r: the verified pairs of rounds 0..r merged, as the reference's
preprocess.py reads every iteration's data of the experiment (``iter_*/``) before each fine-tune, which starts
from the base model (babysit.sh's ``TRAIN_INCREMENTAL=0``). Pure: no Beam, no files.

Input: the solved PUZZLE records of every round (a round's ``puzzles/``: each puzzle with its distinct verified
solutions ``g``, shortest first, at most ``max_solutions``), each with the ``round`` it came from. Each step is
counted, in the manifest's terms (in = out + dropped):

1. ``merge_solutions``: one puzzle per puzzle text (``plans.puzzle_id(sat)``: a puzzle generated again in another
   round is the same puzzle), with the distinct solutions of all its rounds: a solution found again is a
   ``duplicate_solution``; the ``max_solutions`` shortest stay (equal lengths by text), the others are
   ``over_solution_cap``. A round kept its own shortest ones, so these are the shortest of everything verified.
2. Each kept solution becomes its training example through the round's own builder
   (``plans.solved_puzzle_examples``), from the record of the earliest round that found it (its name and
   provenance, and that round's iteration in the provenance: ``source_uri``/``source_row`` repeat across rounds).
3. ``training_dedup``: one example per id (equal text), that of the earliest round: ``duplicate_example``.
4. ``training_cap``: the ``cap`` examples first in ``plans.example_sort_key(example, seed)`` order, as a round's
   own cap chooses; the others are ``over_example_cap``.

The result depends on the set of input records only, never on their order. One difference from the reference:
its limit of 8 applies to each iteration's file separately, so a puzzle generated again in a later iteration can
bring 8 more examples there; here a puzzle keeps its 8 shortest solutions across rounds.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Sequence

from transforms.io.training_examples import pick_duplicate
from transforms.selfplay import plans
from transforms.selfplay import puzzles as seed_format
from transforms.selfplay.preset import SelfPlayPreset

STAGES = ("merge_solutions", "training_dedup", "training_cap")


@dataclasses.dataclass
class Merged:
    """The merged, capped examples (in ``example_sort_key`` order) and what each step dropped."""

    examples: list[dict[str, Any]]
    pairs_in: int = 0
    duplicate_solutions: int = 0
    over_solution_cap: int = 0
    built: int = 0
    duplicate_examples: int = 0
    over_example_cap: int = 0

    def counts(self) -> dict[str, int]:
        """Flat counts as ``transforms.stats.accounting.build_manifest`` reads them (a reason only when it
        dropped something, as a pipeline counts)."""
        kept_pairs = self.pairs_in - self.duplicate_solutions - self.over_solution_cap
        distinct = self.built - self.duplicate_examples
        dropped = {"merge_solutions|rejected|duplicate_solution": self.duplicate_solutions,
                   "merge_solutions|rejected|over_solution_cap": self.over_solution_cap}
        return {
            "merge_solutions|in": self.pairs_in, "merge_solutions|out": kept_pairs,
            **{key: n for key, n in dropped.items() if n},
            "training_dedup|in": self.built, "training_dedup|out": distinct,
            "training_cap|in": distinct, "training_cap|out": len(self.examples),
        }


def _earliest(record: Mapping[str, Any]) -> tuple:
    return (record["round"], record["source_uri"], record["source_row"], record["name"])


def merge_solutions(records: Iterable[Mapping[str, Any]], max_solutions: int
                    ) -> tuple[list[dict[str, Any]], int, int, int]:
    """Solved PUZZLE records of several rounds -> (PUZZLE records whose ``solutions`` are the kept ones, each
    solution in exactly one record, that of the earliest round holding it; solutions in; duplicate solutions;
    solutions over the per-puzzle limit). The records come back ordered by puzzle id."""
    if max_solutions < 1:
        raise ValueError("max_solutions must be at least 1")
    by_puzzle: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        by_puzzle.setdefault(plans.puzzle_id(record["sat"]), []).append(record)
    merged: list[dict[str, Any]] = []
    pairs_in = duplicates = over = 0
    for key in sorted(by_puzzle):
        rounds_records = sorted(by_puzzle[key], key=_earliest)
        holders: dict[str, Mapping[str, Any]] = {}  # solution -> the earliest record that holds it
        for record in rounds_records:
            for g in record["solutions"]:
                pairs_in += 1
                if g in holders:
                    duplicates += 1
                else:
                    holders[g] = record
        kept = sorted(holders, key=lambda g: (len(g), g))[:max_solutions]
        over += len(holders) - len(kept)
        per_record: dict[int, list[str]] = {}
        for g in kept:
            per_record.setdefault(id(holders[g]), []).append(g)
        for record in rounds_records:
            if id(record) in per_record:
                merged.append({**record, "solutions": per_record.pop(id(record))})
    return merged, pairs_in, duplicates, over


def merge_rounds(records: Iterable[Mapping[str, Any]], *, max_solutions: int, cap: int, seed: int,
                 preset: SelfPlayPreset, training_format: str, template: seed_format.SelfPlayPrompt) -> Merged:
    """The training examples of the solved PUZZLE records of rounds 0..r (each with its ``round``): merged per
    puzzle, built, deduplicated and capped (see the module's docstring)."""
    if cap < 0:
        raise ValueError("the example cap must be at least 0")
    solved, pairs_in, duplicates, over = merge_solutions(records, max_solutions)
    built = [(puzzle["round"], e) for puzzle in solved
             for e in plans.solved_puzzle_examples(puzzle, preset, training_format, template, puzzle["round"])]
    by_id: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for round_, example in built:
        by_id.setdefault(example["id"], []).append((round_, example))
    # Equal examples: the one of the earliest round (its iteration in the provenance), then as every dedup picks.
    distinct: Sequence[dict[str, Any]] = []
    for group in by_id.values():
        earliest = min(round_ for round_, _ in group)
        distinct.append(pick_duplicate([e for round_, e in group if round_ == earliest])[0])
    ordered = sorted(distinct, key=lambda e: plans.example_sort_key(e, seed))
    return Merged(ordered[:cap], pairs_in=pairs_in, duplicate_solutions=duplicates, over_solution_cap=over,
                  built=len(built), duplicate_examples=len(built) - len(distinct),
                  over_example_cap=max(0, len(distinct) - cap))
