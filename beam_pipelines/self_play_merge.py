"""The training set of self-play round r: the verified pairs of rounds 0..r, merged per puzzle, deduplicated,
shuffled by a seeded hash and capped (the reference's preprocess.py over every iteration's data). The self-play
loop runs it before each fine-tune; the fine-tune reads only its output.

    python -m beam_pipelines.self_play_merge --round runs/sp/round-0/self-play --round runs/sp/round-1/self-play \\
        --run-seed 0 --output runs/sp/round-1/training-merged

Reads each round's ``puzzles/`` (its solved puzzles with their kept solutions) and ``manifest.json`` (its
iteration, puzzle preset, training format and per-puzzle limit: every round must have the same preset, format and
limit, and no two rounds the same iteration). Per puzzle text, up to the limit of distinct solutions across the
rounds, shortest first; each becomes its example through the round's own builder, from the earliest round that
found it (its iteration in the example's provenance); equal examples are kept once; the cap (``--example-cap``,
default the one of ``--iteration``, itself by default the highest iteration of the rounds: 25,000 at 0, 1,000,000
later) keeps the first in the seeded order of a round's own cap (``transforms.selfplay.merge``).

Outputs: ``training/puzzles/`` (training shards, written as a round's own, rows ordered by ``hash(id, seed)``),
``manifest.json`` (per-step counts, checked to balance) and ``summary.json``. Runs in one process, as the
reference's preprocess.py, but out of core: the rounds' solved puzzles are read one row group at a time into an
SQLite database in a temporary directory (``tempfile``'s: ``TMPDIR``), merged there
(``transforms.selfplay.merge.merge_out_of_core``) and the kept examples streamed into the shards in their row
order (``write_sorted_shards``), so its memory does not grow with the rounds' records (disk: about 1.4 KB per
pair, see the merge's docstring).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Iterator, Sequence

from schemas.records import SCHEMA_VERSION, RecordKind
from transforms.io.filesystems import read_text
from transforms.io.parquet import iter_rows, sort_key, sort_key_bytes, write_index_atomic, write_sorted_shards
from transforms.selfplay import puzzles as seed_format
from transforms.selfplay import training_text
from transforms.selfplay.merge import STAGES, merge_out_of_core
from transforms.selfplay.preset import load_preset
from transforms.stats.accounting import StageSpec, build_manifest

PUZZLE_COLUMNS = ("id", "name", "sat", "solutions", "source_uri", "source_row")
SHARD_RECORDS = 100_000  # as a round's own training shards
READ_BATCH = 256  # rows of a round's puzzles read at a time
ROUND_SETTINGS = ("iteration", "max_solutions", "training_format")  # what the merge reads of a round's manifest
ROUND_TOP_LEVEL = ("puzzle_preset",)  # ... and of its top level (read as one of its settings)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m beam_pipelines.self_play_merge",
                                     description=None,  # the whole docstring is the epilog
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--round", dest="rounds", action="append", required=True,
                        help="A self-play round's output directory (repeat for each round).")
    parser.add_argument("--output", required=True)
    parser.add_argument("--iteration", type=int, default=None,
                        help="The iteration whose cap applies (default: the highest iteration of the rounds).")
    parser.add_argument("--example-cap", dest="example_cap", type=int, default=None,
                        help="Override the cap (default: the cap of --iteration).")
    parser.add_argument("--run-seed", dest="run_seed", type=int, default=0,
                        help="Seed of the cap's order and of the shards' row order.")
    return parser.parse_args(argv)


def read_round(directory: str) -> dict[str, Any]:
    """A round's manifest settings (its records: ``round_records``)."""
    directory = directory.rstrip("/")
    manifest = json.loads(read_text(f"{directory}/manifest.json"))
    settings = {**(manifest.get("settings") or {}), **{k: manifest[k] for k in ROUND_TOP_LEVEL if k in manifest}}
    missing = [k for k in (*ROUND_SETTINGS, *ROUND_TOP_LEVEL) if k not in settings]
    if manifest.get("job") != "self-play" or missing:
        raise ValueError(f"{directory}/manifest.json is not a self-play job's manifest"
                         + (f" (it records no {', '.join(missing)})" if missing else ""))
    return settings


def round_records(directory: str, iteration: int) -> Iterator[dict[str, Any]]:
    """A round's solved PUZZLE records, each with the round's ``round`` (its iteration), read ``READ_BATCH`` rows
    at a time, in shard order."""
    for row in iter_rows(f"{directory.rstrip('/')}/puzzles", PUZZLE_COLUMNS, READ_BATCH):
        yield {**row, "round": iteration}


def agreed(settings: Sequence[dict[str, Any]], key: str, directories: Sequence[str]) -> Any:
    """The one value of a round setting all rounds share (``ValueError`` when they differ)."""
    values = {s[key] for s in settings}
    if len(values) != 1:
        each = ", ".join(f"{d}: {s[key]!r}" for d, s in zip(directories, settings))
        raise ValueError(f"the rounds differ in {key} ({each}): their examples cannot be one training set")
    return values.pop()


def distinct_iterations(settings: Sequence[dict[str, Any]], directories: Sequence[str]) -> None:
    """``ValueError`` when two rounds share an iteration (one round given twice, or two runs of one iteration):
    their pairs would be counted as two rounds' and the default cap would not be the one of the rounds given."""
    by_iteration: dict[int, list[str]] = {}
    for directory, s in zip(directories, settings):
        by_iteration.setdefault(s["iteration"], []).append(directory)
    shared = {i: ds for i, ds in sorted(by_iteration.items()) if len(ds) > 1}
    if shared:
        each = "; ".join(f"iteration {i}: {', '.join(ds)}" for i, ds in shared.items())
        raise ValueError(f"the rounds must be of distinct iterations, but some share one ({each})")


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.monotonic()
    from beam_pipelines.launch import check_output_location  # Beam loads only here, after the arguments parse

    check_output_location(args.output)  # a JobConfigError (a ValueError): "" would write its shards under /
    output = args.output.rstrip("/")
    preset = load_preset()
    settings = [read_round(directory) for directory in args.rounds]
    distinct_iterations(settings, args.rounds)
    max_solutions = agreed(settings, "max_solutions", args.rounds)
    training_format = agreed(settings, "training_format", args.rounds)
    puzzle_preset = agreed(settings, "puzzle_preset", args.rounds)
    iteration = args.iteration if args.iteration is not None else max(s["iteration"] for s in settings)
    cap = args.example_cap if args.example_cap is not None else training_text.example_cap(iteration, preset.training)
    records = (r for directory, s in zip(args.rounds, settings) for r in round_records(directory, s["iteration"]))
    with merge_out_of_core(records, max_solutions=max_solutions, cap=cap, seed=args.run_seed, preset=preset,
                           training_format=training_format, template=seed_format.load_self_play_prompt(),
                           write_key=lambda e: sort_key_bytes(sort_key(e["id"], args.run_seed))) as merged:
        # The shards' row order is sort_key(id, seed, digest); the ids are distinct, so (hash, id) decides it.
        write_sorted_shards(merged.examples_in_write_order(), merged.kept, f"{output}/training/puzzles",
                            RecordKind.TRAINING_EXAMPLE, seed=args.run_seed, shard_records=SHARD_RECORDS)
    specs = [StageSpec(STAGES[0]), StageSpec(STAGES[1], writes_rejected=False, unwritten_reason="duplicate_example"),
             StageSpec(STAGES[2], writes_rejected=False, unwritten_reason="over_example_cap")]
    extra = {
        "schema_version": SCHEMA_VERSION, "job": "self-play-merge", "stage_order": list(STAGES),
        "rounds": [{"dir": d, "iteration": s["iteration"], "run_seed": s.get("run_seed")}
                   for d, s in zip(args.rounds, settings)],
        "settings": {"max_solutions": max_solutions, "training_format": training_format,
                     "puzzle_preset": puzzle_preset, "example_cap": cap, "iteration": iteration,
                     "run_seed": args.run_seed},
        "training_examples": merged.kept,
    }
    manifest = build_manifest(merged.counts(), specs, extra)
    write_index_atomic(f"{output}/manifest.json", manifest)
    summary = {
        "rounds": len(args.rounds), "solved_puzzles_in": merged.records_in, "pairs_in": merged.pairs_in,
        "duplicate_solutions": merged.duplicate_solutions, "over_solution_cap": merged.over_solution_cap,
        "duplicate_examples": merged.duplicate_examples, "over_example_cap": merged.over_example_cap,
        "training_examples": merged.kept, "example_cap": cap, "balanced": manifest["balanced"],
        "wall_seconds": round(time.monotonic() - started, 2),
    }
    write_index_atomic(f"{output}/summary.json", summary)
    print(json.dumps(summary, indent=2))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    try:
        summary = run(argv)
    except (ValueError, FileNotFoundError) as err:
        print(f"self-play-merge: {err}", file=sys.stderr)
        return 2
    return 0 if summary["balanced"] else 1


if __name__ == "__main__":
    code = main()
    # Every output is written and closed by now. Skip the interpreter's finalization: in CI this process once
    # aborted there ("terminate called without an active exception", a native thread of pyarrow or grpc, which
    # the imports load) after a complete merge, and the loop took the abort for a failed step.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
