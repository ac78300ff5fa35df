"""Wall time and peak memory of the self-play merge (``beam_pipelines.self_play_merge``) as the loop runs it:
round directories in (solved PUZZLE shards and a manifest), training shards, manifest and summary out.

Synthetic rounds: ``--puzzles`` distinct puzzles (a P3-like ``f`` of some 250 characters), each with
``--solutions`` distinct solutions (some 120 characters, of different lengths), spread over ``--rounds`` rounds
(puzzle i in round i mod rounds); a ``--repeat`` fraction of them is generated again in the next round with the
same solutions (duplicate solutions, dropped by the merge). Examples: puzzles x solutions (under the cap).

Each ``--code LABEL=DIR`` (a checkout of the repository: ``git archive HEAD | tar -x -C /tmp/merge-old`` for the
code before a change) runs the merge in a fresh process from that directory (``python -m
beam_pipelines.self_play_merge``, the same interpreter); its peak RSS comes from ``wait4`` (the child's
``ru_maxrss``), and ``empty_merge_rss_mib`` is that of the same merge of one empty round (the interpreter, its
imports and fixed costs). The outputs of all
codes are compared (the shards' sha256 in ``shards.json``, the manifest and the summary but its wall time;
``outputs_sha256`` of each run digests them, to compare runs of separate invocations).

    python bench/merge.py --puzzles 100000 --solutions 4 --code before=/tmp/merge-old --code after=.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from runners.hardware import describe_machine  # noqa: E402 (light: this process must stay small, see run_child)

MODULE = "beam_pipelines.self_play_merge"


def puzzle_text(i: int) -> str:
    return (f"def f(li: list, n={i % 97}):\n"
            f"    \"\"\"Find a list of {i % 13 + 3} distinct integers whose sum is {i} and that holds n.\"\"\"\n"
            f"    return len(li) == len(set(li)) == {i % 13 + 3} and sum(li) == {i} and n in li "
            f"and all(x % 2 == {i % 2} or x == n for x in li)")


def solution_text(i: int, k: int) -> str:
    return (f"def g(n={i % 97}):\n    # solution {k} of puzzle {i}\n"
            f"    parts = [n] + [2 * j + {i % 2} for j in range({i % 13 + 2})]\n"
            f"    return parts + [{i} - sum(parts)]" + " " * k + f"  # {'x' * (k * 7)}")


def solved(i: int, solutions: int) -> dict:
    sols = [solution_text(i, k) for k in range(solutions)]
    return {"id": f"puzzle-{i}", "name": f"generated/prompt-{i // 64}#{i % 64}", "sat": puzzle_text(i),
            "answer_type": "List[int]", "trivial_tested": True, "sol": sols[0], "solutions": sols, "attempts": 32,
            "verified_attempts": len(sols), "origin": "generated", "preset": "paper", "prompt_index": i // 64,
            "sample_index": i % 64, "examples": [], "model": "m", "seed": 1,
            "source_uri": f"self-play:prompt-{i // 64}", "source_row": i % 64, "stage": "self_play.select"}


def write_rounds(work: Path, puzzles: int, solutions: int, rounds: int, repeat: float, seed: int) -> list[str]:
    from schemas.records import RecordKind
    from transforms.io.parquet import write_shards

    rng = random.Random(seed)
    by_round: list[list[dict]] = [[] for _ in range(rounds)]
    for i in range(puzzles):
        by_round[i % rounds].append(solved(i, solutions))
        if rounds > 1 and rng.random() < repeat:
            by_round[(i + 1) % rounds].append(solved(i, solutions))
    dirs = []
    for r, records in enumerate(by_round):
        directory = work / f"round-{r}"
        rng.shuffle(records)
        write_shards(records, str(directory / "puzzles"), RecordKind.PUZZLE, seed=None, shard_records=100_000)
        settings = {"iteration": r, "training_format": "raw", "max_solutions": 8, "example_cap": 1_000_000,
                    "run_seed": r}
        (directory / "manifest.json").write_text(json.dumps({"job": "self-play", "puzzle_preset": "paper",
                                                             "settings": settings}))
        dirs.append(str(directory))
    empty = work / "empty-round"  # the baseline run: every import and fixed cost of the merge, no record
    write_shards([], str(empty / "puzzles"), RecordKind.PUZZLE, seed=None, shard_records=100_000)
    (empty / "manifest.json").write_text(json.dumps({"job": "self-play", "puzzle_preset": "paper",
                                                     "settings": {"iteration": 0, "training_format": "raw",
                                                                  "max_solutions": 8}}))
    return dirs


def run_child(argv: list[str], cwd: str) -> tuple[int, float, float]:
    """(exit code, wall seconds, peak RSS MiB) of one child process. Linux carries the RSS high-water mark of the
    forking process into the child's ``ru_maxrss`` (across exec), so this process stays small: it imports no
    pyarrow and writes the rounds in a child of its own (``--generate``)."""
    started = time.monotonic()
    child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, time.monotonic() - started, usage.ru_maxrss / 1024


def outputs(out: Path) -> dict:
    shards = json.loads((out / "training" / "puzzles" / "shards.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("wall_seconds")
    return {"shards": [(s["path"], s["rows"], s["sha256"]) for s in shards["shards"]],
            "manifest": json.loads((out / "manifest.json").read_text()), "summary": summary}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puzzles", type=int, default=100_000)
    parser.add_argument("--solutions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--code", action="append", default=None, metavar="LABEL=DIR",
                        help="A checkout to run the merge from (repeatable; default: after=this repository).")
    parser.add_argument("--work", default=None, help="Where the rounds and outputs go (default: a temp dir).")
    parser.add_argument("--generate", default=None, help=argparse.SUPPRESS)  # the child that writes the rounds
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "merge.json"),
                        help="JSON results file; a run replaces the entry of its --puzzles and keeps the others.")
    args = parser.parse_args(argv)
    if args.generate:
        rounds = write_rounds(Path(args.generate), args.puzzles, args.solutions, args.rounds, args.repeat, args.seed)
        print(json.dumps(rounds))
        return 0
    codes = dict(c.split("=", 1) for c in (args.code or [f"after={REPO}"]))
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-merge-"))
    work.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    rounds = json.loads(subprocess.run(
        [sys.executable, __file__, f"--generate={work}", f"--puzzles={args.puzzles}", f"--solutions={args.solutions}",
         f"--rounds={args.rounds}", f"--repeat={args.repeat}", f"--seed={args.seed}"],
        check=True, stdout=subprocess.PIPE, text=True).stdout)
    generate_s = time.monotonic() - t0
    results, seen = {}, {}
    for label, code in codes.items():
        code = str(Path(code).resolve())
        _, _, base_rss = run_child([sys.executable, "-m", MODULE, f"--round={work / 'empty-round'}",
                                    f"--output={work / 'merged-empty'}"], code)
        out = work / f"merged-{label}"
        rc, wall, rss = run_child([sys.executable, "-m", MODULE, *(f"--round={r}" for r in rounds),
                                   f"--output={out}", "--run-seed=1"], code)
        seen[label] = outputs(out) if rc == 0 else None
        results[label] = {"code": code, "exit_code": rc, "wall_seconds": round(wall, 1),
                          "peak_rss_mib": round(rss, 1), "empty_merge_rss_mib": round(base_rss, 1),
                          "above_empty_merge_mib": round(rss - base_rss, 1),
                          **({"summary": seen[label]["summary"], "outputs_sha256": hashlib.sha256(
                              json.dumps(seen[label], sort_keys=True).encode()).hexdigest()} if seen[label] else {})}
        print(json.dumps({label: results[label]}), flush=True)
        shutil.rmtree(out, ignore_errors=True)
    first = next(iter(seen.values()))
    entry = {
        "puzzles": args.puzzles, "solutions": args.solutions, "rounds": args.rounds, "repeat": args.repeat,
        "records": sum(json.loads((Path(r) / "puzzles" / "shards.json").read_text())["total_rows"] for r in rounds),
        "generate_seconds": round(generate_s, 1), "started_utc": started.strftime("%Y-%m-%d %H:%M UTC"),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "identical_outputs": (all(s is not None and s == first for s in seen.values()) if len(seen) > 1
                              else None),  # None: one code only, nothing to compare
        "runs": results, "machine": describe_machine(),
        # the floor of every child's peak RSS (see run_child):
        "bench_process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "note": "machine busy with other work: timings approximate, memory is what matters",
    }
    print(json.dumps({k: v for k, v in entry.items() if k not in ("runs", "machine")}), flush=True)
    path = Path(args.output)
    previous = json.loads(path.read_text()) if path.exists() else {}
    previous[str(args.puzzles)] = entry
    path.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if entry["identical_outputs"] is not False and all(r["exit_code"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
