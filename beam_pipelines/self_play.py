"""Self-play programming puzzles: the model writes puzzles f(x) -> bool and solutions g(); the sandbox keeps
the pairs with f(g()) is True; the verified pairs become training examples.

    python -m beam_pipelines.self_play --output runs/puzzles                    # SmolLM2, the seed puzzles
    python -m beam_pipelines.self_play --p3-dir ../shared/data/p3 --num-prompts 64 --output runs/puzzles

few-shot prompts -> RunInference (the shared engine) -> join by prompt key -> samples -> parse -> sandbox
-> dedup by puzzle -> puzzles/, training/puzzles/ (training shards), rejected/, summary.json

Every generated sample ends in exactly one place: ``puzzles/`` (verified, one per distinct puzzle) or
``rejected/`` with a reason: a parse reason (``transforms.selfplay.puzzles.PARSE_REASONS``), ``engine_error``,
``verify_failed``, ``verify_timeout`` or ``duplicate_puzzle``. ``summary.json`` says whether the counts balance.
With ``--p3-dir``, the few-shot examples also come from the P3 training families; the test families are
never shown to the model.
"""
from __future__ import annotations

import collections
import sys
from typing import Any, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.launch import JobSpec, job_main, pipeline_options, run_timed, write_summary
from beam_pipelines.options import OutputOptions
from runners.inference import infer_and_join
from runners.options import EngineOptions, handler_from_options
from schemas.records import RecordKind
from transforms.execute.options import SandboxOptions, require_isolation, sandbox_limits
from transforms.instruct.options import MethodOptions
from transforms.io.beam import WriteParquetShards
from transforms.io.parquet import read_rows
from transforms.selfplay import puzzles
from transforms.selfplay.beam import (
    KeepOnePerPuzzleFn,
    ParsePuzzleFn,
    VerifyPuzzleFn,
    generated_samples,
    plan_prompts,
    to_training_example,
)
from transforms.selfplay.options import SelfPlayOptions
from transforms.stage import REJECTED, StageOutput, flatten

JOB = JobSpec("self-play", __doc__, (OutputOptions, SelfPlayOptions, SandboxOptions, MethodOptions, EngineOptions))


def prompt_plans(options: PipelineOptions) -> list[tuple[str, dict[str, Any]]]:
    """One keyed plan per prompt (built in the launcher)."""
    opts = options.view_as(SelfPlayOptions)
    return plan_prompts(
        puzzles.example_pool(opts.p3_dir), puzzles.load_self_play_prompt(), num_prompts=opts.num_prompts,
        shots=opts.shots, samples_per_prompt=opts.samples_per_prompt, temperature=opts.puzzle_temperature,
        max_tokens=opts.puzzle_max_tokens, run_seed=options.view_as(MethodOptions).run_seed)


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions) -> None:
    opts = options.view_as(SelfPlayOptions)
    output = options.view_as(OutputOptions).output.rstrip("/")
    model = options.view_as(EngineOptions).model
    run_seed = options.view_as(MethodOptions).run_seed
    plans = pipeline | "Plans" >> beam.Create(prompt_plans(options))
    requests = plans | "Requests" >> beam.Map(lambda kv: (kv[0], kv[1]["request"]))
    samples = (infer_and_join(requests, plans, handler_from_options(options), "Generate")
               | "Samples" >> beam.FlatMap(generated_samples, opts.samples_per_prompt))
    parsed = StageOutput.of(samples | "Parse" >> beam.ParDo(ParsePuzzleFn()).with_outputs(REJECTED, main="main"))
    isolated = require_isolation(options)
    template = puzzles.load_self_play_prompt()
    verified = VerifyPuzzleFn(sandbox_limits(options), model, template, allow_unisolated=not isolated).apply(
        parsed.main | "Spread" >> beam.Reshuffle(), "Verify")
    distinct = KeepOnePerPuzzleFn().apply(
        verified.main
        | "KeyByPuzzle" >> beam.Map(lambda r: (r["puzzle_id"], r))
        | "GroupByPuzzle" >> beam.GroupByKey(), "KeepOne")
    _ = distinct.main | "WritePuzzles" >> WriteParquetShards(
        f"{output}/puzzles", RecordKind.PUZZLE, seed=None, shard_records=100_000)
    _ = (distinct.main
         | "ToTrainingExamples" >> beam.Map(to_training_example, template)
         | "WriteTraining" >> WriteParquetShards(f"{output}/training/puzzles", RecordKind.TRAINING_EXAMPLE,
                                                 seed=run_seed, shard_records=100_000))
    _ = (flatten((parsed.rejected, verified.rejected, distinct.rejected), "AllRejected")
         | "WriteRejected" >> WriteParquetShards(f"{output}/rejected", RecordKind.REJECTED_RECORD, seed=None,
                                                 shard_records=100_000))


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = pipeline_options(argv, JOB)
    opts = options.view_as(SelfPlayOptions)
    output = options.view_as(OutputOptions).output.rstrip("/")
    result, _, elapsed = run_timed(options, build_pipeline)
    kept = read_rows(f"{output}/puzzles", ["id"])
    dropped = read_rows(f"{output}/rejected", ["reason"])
    reasons = collections.Counter(r["reason"] for r in dropped)
    samples = opts.num_prompts * opts.samples_per_prompt
    summary = {
        "model": options.view_as(EngineOptions).model, "prompts": opts.num_prompts,
        "samples": samples, "verified_puzzles": len(kept), "rejected": dict(sorted(reasons.items())),
        "balanced": samples == len(kept) + len(dropped),  # every sample ends in exactly one place
        "examples_from": "seed puzzles" + (f" + P3 train families ({opts.p3_dir})" if opts.p3_dir else ""),
        "wall_seconds": round(elapsed, 2),
    }
    return write_summary(output, summary, result)


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(argv, JOB, run)


if __name__ == "__main__":
    sys.exit(main())
