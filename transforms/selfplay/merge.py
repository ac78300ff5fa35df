"""The training set of self-play round r: the verified pairs of rounds 0..r merged, as the reference's
preprocess.py reads every iteration's data of the experiment (``iter_*/``) before each fine-tune, which starts
from the base model (babysit.sh's ``TRAIN_INCREMENTAL=0``). No Beam; out of core: the records and examples wait
in an SQLite database in a temporary directory (see "Memory" below), removed at the end.

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

The result depends on the set of input records only, never on their order (records of one puzzle that tie in
(round, source_uri, source_row, name) are ordered by a digest of their whole content). One difference from the
reference: its limit of 8 applies to each iteration's file separately, so a puzzle generated again in a later
iteration can bring 8 more examples there; here a puzzle keeps its 8 shortest solutions across rounds.

Memory (``merge_out_of_core``): the input records are consumed as a stream, each written at once to the database
(its ordering columns and its pickled body); one query then reads them back grouped by puzzle in the order of
step 1, so only one puzzle's records (one per round that generated it) are held in Python at a time; its examples are
written back as they are built, with their dedup columns and cap key; the dedup (a window over the examples of
one id) and the cap (the first ``cap`` in key order) are SQL over those tables, and the kept examples are read
back one at a time. Nothing is kept per record in Python (the counts are integers); SQLite's page cache and each
sorter are bounded by ``CACHE_KIB`` and spill to temporary files beyond it (SQLite's, in ``TMPDIR``). Disk: the
records' and examples' pickles and keys (1.4 KB per pair on ``bench/merge.py``'s synthetic rounds), and as much
again at most in SQLite's temporary sort files.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import pickle
import sqlite3
import tempfile
from operator import itemgetter
from typing import Any, Callable, Iterable, Iterator, Mapping

from transforms.selfplay import plans
from transforms.selfplay import puzzles as seed_format
from transforms.selfplay.preset import SelfPlayPreset

STAGES = ("merge_solutions", "training_dedup", "training_cap")
CACHE_KIB = 32 * 1024  # SQLite's page cache, and the memory of each of its sorters before it spills to disk
_PICKLE = pickle.HIGHEST_PROTOCOL

_SCHEMA = """
CREATE TABLE records (pid, round, source_uri, source_row, name, tiebreak, body);
CREATE TABLE examples (id, round, source_uri, source_row, snippet_key, provenance, cap_key, write_key, body);
CREATE TABLE winners (ex INTEGER PRIMARY KEY);
CREATE TABLE kept (ex INTEGER, cap_key, id);
"""
# Columns without a declared type: SQLite stores each value as given (no affinity conversion), and orders
# integers by value and text (UTF-8, BINARY collation) by code point, as Python orders them.


@dataclasses.dataclass
class MergeCounts:
    """What each step took in and dropped; ``kept``: the examples of the training set."""

    pairs_in: int = 0
    duplicate_solutions: int = 0
    over_solution_cap: int = 0
    built: int = 0
    duplicate_examples: int = 0
    over_example_cap: int = 0
    kept: int = 0
    records_in: int = 0

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
            "training_cap|in": distinct, "training_cap|out": self.kept,
        }


@dataclasses.dataclass
class Merged(MergeCounts):
    """The merged, capped examples (in ``example_sort_key`` order) and what each step dropped."""

    examples: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def _earliest(record: Mapping[str, Any]) -> tuple:
    return (record["round"], record["source_uri"], record["source_row"], record["name"])


def record_digest(record: Mapping[str, Any]) -> bytes:
    """16 bytes of blake2b over the record's canonical JSON: orders records that tie in ``_earliest``."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=repr)
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def merge_puzzle(rounds_records: list[Mapping[str, Any]], max_solutions: int
                 ) -> tuple[list[dict[str, Any]], int, int, int]:
    """Step 1 for the records of one puzzle, given in ``_earliest`` order -> (the records that hold a kept
    solution, each with its kept ones in (length, text) order; solutions in; duplicate solutions; solutions over
    the limit)."""
    holders: dict[str, int] = {}  # solution -> the index of the earliest record that holds it
    pairs_in = duplicates = 0
    for i, record in enumerate(rounds_records):
        for g in record["solutions"]:
            pairs_in += 1
            if g in holders:
                duplicates += 1
            else:
                holders[g] = i
    kept = sorted(holders, key=lambda g: (len(g), g))[:max_solutions]
    per_record: dict[int, list[str]] = {}
    for g in kept:
        per_record.setdefault(holders[g], []).append(g)
    merged = [{**record, "solutions": per_record[i]} for i, record in enumerate(rounds_records) if i in per_record]
    return merged, pairs_in, duplicates, len(holders) - len(kept)


def merge_solutions(records: Iterable[Mapping[str, Any]], max_solutions: int
                    ) -> tuple[list[dict[str, Any]], int, int, int]:
    """Solved PUZZLE records of several rounds -> (PUZZLE records whose ``solutions`` are the kept ones, each
    solution in exactly one record, that of the earliest round holding it; solutions in; duplicate solutions;
    solutions over the per-puzzle limit). The records come back ordered by puzzle id. In memory (for small
    inputs); ``merge_out_of_core`` does the same step on disk."""
    if max_solutions < 1:
        raise ValueError("max_solutions must be at least 1")
    by_puzzle: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        by_puzzle.setdefault(plans.puzzle_id(record["sat"]), []).append(record)
    merged: list[dict[str, Any]] = []
    pairs_in = duplicates = over = 0
    for key in sorted(by_puzzle):
        group = sorted(by_puzzle[key], key=lambda r: (_earliest(r), record_digest(r)))
        kept, n, d, o = merge_puzzle(group, max_solutions)
        merged += kept
        pairs_in, duplicates, over = pairs_in + n, duplicates + d, over + o
    return merged, pairs_in, duplicates, over


class MergedStore(MergeCounts):
    """The result of ``merge_out_of_core``: its counts, and its kept examples read back from disk one at a
    time (valid only inside the ``with`` block)."""

    def __init__(self, db: sqlite3.Connection, counts: MergeCounts, has_write_key: bool):
        super().__init__(**dataclasses.asdict(counts))
        self._db = db
        self._has_write_key = has_write_key

    def examples(self) -> Iterator[dict[str, Any]]:
        """The kept examples in ``example_sort_key`` order (``Merged.examples``' order)."""
        for (body,) in self._db.execute("SELECT e.body FROM kept k JOIN examples e ON e.rowid = k.ex "
                                        "ORDER BY k.cap_key, k.id"):
            yield pickle.loads(body)

    def examples_in_write_order(self) -> Iterator[dict[str, Any]]:
        """The kept examples in the order of ``write_key`` (given to ``merge_out_of_core``)."""
        if not self._has_write_key:
            raise ValueError("merge_out_of_core was given no write_key")
        for (body,) in self._db.execute("SELECT e.body FROM kept k JOIN examples e ON e.rowid = k.ex "
                                        "ORDER BY e.write_key"):
            yield pickle.loads(body)


def _connect(directory: str) -> sqlite3.Connection:
    db = sqlite3.connect(os.path.join(directory, "merge.sqlite3"), isolation_level=None)
    for pragma in ("journal_mode = OFF", "synchronous = OFF", "temp_store = FILE", "locking_mode = EXCLUSIVE",
                   f"cache_size = -{CACHE_KIB}"):
        db.execute(f"PRAGMA {pragma}")
    db.executescript(_SCHEMA)
    return db


@contextlib.contextmanager
def merge_out_of_core(records: Iterable[Mapping[str, Any]], *, max_solutions: int, cap: int, seed: int,
                      preset: SelfPlayPreset, training_format: str, template: seed_format.SelfPlayPrompt,
                      write_key: Callable[[Mapping[str, Any]], bytes] | None = None,
                      directory: str | None = None) -> Iterator[MergedStore]:
    """``with merge_out_of_core(records, ...) as merged:`` the merge of the solved PUZZLE records of rounds 0..r
    (each with its ``round``; consumed once, as a stream), done in an SQLite database in a new temporary directory
    (under ``directory``, default ``tempfile``'s), removed on leaving the block. ``write_key`` (an example ->
    bytes ordered as the shards' rows) lets ``merged.examples_in_write_order()`` stream the examples in the
    order a writer wants them."""
    if cap < 0:
        raise ValueError("the example cap must be at least 0")
    if max_solutions < 1:
        raise ValueError("max_solutions must be at least 1")
    with tempfile.TemporaryDirectory(prefix="self-play-merge-", dir=directory) as tmp:
        db = _connect(tmp)
        try:
            counts = MergeCounts()

            def record_rows() -> Iterator[tuple]:
                for record in records:
                    counts.records_in += 1
                    yield (plans.puzzle_id(record["sat"]), *_earliest(record), record_digest(record),
                           pickle.dumps(record, _PICKLE))

            def example_rows() -> Iterator[tuple]:
                grouped = db.execute("SELECT pid, body FROM records "
                                     "ORDER BY pid, round, source_uri, source_row, name, tiebreak")
                for _, group in itertools.groupby(grouped, key=itemgetter(0)):
                    merged, n, d, o = merge_puzzle([pickle.loads(body) for _, body in group], max_solutions)
                    counts.pairs_in += n
                    counts.duplicate_solutions += d
                    counts.over_solution_cap += o
                    for puzzle in merged:
                        for e in plans.solved_puzzle_examples(puzzle, preset, training_format, template,
                                                              puzzle["round"]):
                            counts.built += 1
                            yield (e["id"], puzzle["round"], e["source_uri"], e["source_row"],
                                   e["snippet_id"] or "", e["provenance"], plans.example_sort_key(e, seed),
                                   write_key(e) if write_key else None, pickle.dumps(e, _PICKLE))

            db.execute("BEGIN")
            db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)", record_rows())
            db.executemany("INSERT INTO examples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", example_rows())
            db.execute("DELETE FROM records")
            # Equal examples: the one of the earliest round (its iteration in the provenance), then as every dedup
            # picks (transforms.io.training_examples.pick_duplicate). Examples of one id equal in all these
            # columns are equal in every field (the id is the text's), so which of them stays changes nothing.
            db.execute("INSERT INTO winners SELECT ex FROM (SELECT rowid AS ex, row_number() OVER (PARTITION BY id "
                       "ORDER BY round, source_uri, source_row, snippet_key, provenance) AS n FROM examples) "
                       "WHERE n = 1")
            db.execute("INSERT INTO kept SELECT e.rowid, e.cap_key, e.id FROM winners w "
                       "JOIN examples e ON e.rowid = w.ex ORDER BY e.cap_key, e.id LIMIT ?", (cap,))
            db.execute("COMMIT")
            (distinct,) = db.execute("SELECT count(*) FROM winners").fetchone()
            (counts.kept,) = db.execute("SELECT count(*) FROM kept").fetchone()
            counts.duplicate_examples = counts.built - distinct
            counts.over_example_cap = distinct - counts.kept
            yield MergedStore(db, counts, write_key is not None)
        finally:
            db.close()


def merge_rounds(records: Iterable[Mapping[str, Any]], *, max_solutions: int, cap: int, seed: int,
                 preset: SelfPlayPreset, training_format: str, template: seed_format.SelfPlayPrompt) -> Merged:
    """The training examples of the solved PUZZLE records of rounds 0..r (each with its ``round``): merged per
    puzzle, built, deduplicated and capped (see the module's docstring), as a list (``merge_out_of_core``
    streams them)."""
    with merge_out_of_core(records, max_solutions=max_solutions, cap=cap, seed=seed, preset=preset,
                           training_format=training_format, template=template) as merged:
        counts = {f.name: getattr(merged, f.name) for f in dataclasses.fields(MergeCounts)}
        return Merged(**counts, examples=list(merged.examples()))
