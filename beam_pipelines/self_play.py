"""Self-play programming puzzles: the model writes puzzles f(x) -> bool and solutions g(); the sandbox keeps
the pairs with f(g()) is True; the verified pairs become training examples.

    python -m beam_pipelines.self_play --output runs/puzzles                    # SmolLM2, the seed puzzles
    python -m beam_pipelines.self_play --p3-dir ../shared/data/p3 --num-prompts 64 --output runs/puzzles

few-shot prompts -> RunInference (the shared engine) -> join by prompt key -> samples -> parse -> sandbox
-> dedup by puzzle -> puzzles/, training/puzzles/ (training shards), rejected/, summary.json

Every generated sample ends in exactly one place: ``puzzles/`` (verified, one per distinct puzzle) or
``rejected/`` with a reason: a parse reason (``transforms.puzzles.PARSE_REASONS``), ``engine_error``,
``verify_failed``, ``verify_timeout`` or ``duplicate_puzzle``. ``summary.json`` says whether the counts balance.
With ``--p3-dir``, the few-shot examples also come from the P3 training families; the test families are
never shown to the model.
"""
from __future__ import annotations

import collections
import json
import sys
from typing import Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.launch import engine_seconds, job_main, pipeline_options, run_timed
from beam_pipelines.options import OutputOptions
from runners.api import GenerateRequest, SamplingSpec, request_seed
from runners.options import EngineOptions, handler_from_options  # noqa: F401
from schemas.records import RecordKind, rejected
from transforms import puzzles
from transforms.method_options import MethodOptions
from transforms.parquet_io import WriteParquetShards, read_rows, write_index_atomic
from transforms.sandbox import SandboxLimits, run_program
from transforms.shards import training_example
from transforms.summarize import engine_failure, infer_and_join

NAMESPACE = "inverse_instruct.self_play"
STAGE = "self_play"


class SelfPlayOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("self-play puzzles")
        group.add_argument("--p3-dir", dest="p3_dir", default=None,
                           help="Folder with P3's puzzles.json and split.json: its training families join the "
                                "seed puzzles as few-shot examples (the test families are never used).")
        group.add_argument("--num-prompts", dest="num_prompts", type=int, default=8)
        group.add_argument("--shots", type=int, default=4, help="Few-shot examples per prompt.")
        group.add_argument("--samples-per-prompt", dest="samples_per_prompt", type=int, default=4)
        group.add_argument("--puzzle-temperature", dest="puzzle_temperature", type=float, default=0.8)
        group.add_argument("--puzzle-max-tokens", dest="puzzle_max_tokens", type=int, default=256)
        group.add_argument("--verify-timeout", dest="verify_timeout", type=float, default=5.0,
                           help="Wall-clock seconds to run f(g()) in the sandbox.")


def plan_prompts(options: PipelineOptions) -> list[tuple[str, dict[str, Any]]]:
    """One keyed plan per prompt (built in the launcher): its request and the examples it shows."""
    opts = options.view_as(SelfPlayOptions)
    if opts.num_prompts < 1 or opts.shots < 1 or opts.samples_per_prompt < 1:
        raise ValueError("--num-prompts, --shots and --samples-per-prompt must be at least 1")
    run_seed = options.view_as(MethodOptions).run_seed
    template = puzzles.load_self_play_prompt()
    pool = puzzles.example_pool(opts.p3_dir)
    plans = []
    for j in range(opts.num_prompts):
        examples = puzzles.choose_examples(pool, opts.shots, j, run_seed)
        index = len(examples) + 1
        key = f"prompt-{j}"
        seed = request_seed(key, 0, run_seed)
        spec = SamplingSpec(n=opts.samples_per_prompt, temperature=opts.puzzle_temperature, top_p=1.0,
                            repetition_penalty=1.0, max_tokens=opts.puzzle_max_tokens, stop=template.stop, seed=seed)
        plans.append((key, {"prompt_index": j, "index": index, "tail": template.next.format(i=index),
                            "examples": examples, "seed": seed,
                            "request": GenerateRequest(puzzles.few_shot_prompt(examples, template), spec)}))
    return plans


def to_samples(element: tuple[str, dict[str, list]], n: int) -> Iterator[dict[str, Any]]:
    """A plan joined to its generation result -> n samples (an engine error gives n error samples)."""
    _, joined = element
    (plan,) = joined["record"]
    results = joined["result"]
    failure = engine_failure(results)
    texts = [] if failure else list(results[0].texts)
    for i in range(n):
        sample = {"prompt_index": plan["prompt_index"], "sample_index": i, "index": plan["index"],
                  "tail": plan["tail"], "examples": plan["examples"], "seed": plan["seed"]}
        if i < len(texts):
            sample["text"] = texts[i]
        else:
            sample["engine_error"] = failure[1] if failure else "fewer samples than asked"
        yield sample


def _provenance(sample: dict[str, Any]) -> dict[str, Any]:
    return {"source_uri": f"self-play:prompt-{sample['prompt_index']}", "source_row": sample["sample_index"]}


def _reject(sample: dict[str, Any], reason: str, detail: str, stage: str) -> beam.pvalue.TaggedOutput:
    payload = {k: v for k, v in sample.items() if k != "examples"}
    payload["examples"] = [e.name for e in sample["examples"]]
    return beam.pvalue.TaggedOutput("rejected", rejected(payload, record_kind=RecordKind.PUZZLE, reason=reason,
                                                         stage=stage, detail=detail, **_provenance(sample)))


class ParsePuzzleFn(beam.DoFn):
    def __init__(self):
        self._parsed = Metrics.counter(NAMESPACE, "parsed")
        self._rejected = Metrics.counter(NAMESPACE, "parse_rejected")

    def process(self, sample: dict[str, Any]) -> Iterator[Any]:
        if "engine_error" in sample:
            self._rejected.inc()
            yield _reject(sample, "engine_error", sample["engine_error"], f"{STAGE}.generate")
            return
        name = f"generated/prompt-{sample['prompt_index']}#{sample['sample_index']}"
        try:
            puzzle = puzzles.parse_generated(sample["tail"], sample["text"], sample["index"], sample["examples"], name)
        except puzzles.PuzzleRejected as e:
            self._rejected.inc()
            yield _reject(sample, e.reason, e.detail, f"{STAGE}.parse")
            return
        self._parsed.inc()
        yield {"puzzle": puzzle, "sample": sample}


class VerifyPuzzleFn(beam.DoFn):
    """Runs f(g()) in the sandbox; keeps the pair only when it is True."""

    def __init__(self, limits: SandboxLimits, model: str, template: puzzles.SelfPlayPrompt):
        self._limits = limits
        self._model = model
        self._template = template
        self._verified = Metrics.counter(NAMESPACE, "verified")
        self._failed = Metrics.counter(NAMESPACE, "verify_rejected")

    def process(self, element: dict[str, Any]) -> Iterator[Any]:
        puzzle, sample = element["puzzle"], element["sample"]
        result = run_program(puzzles.verification_program(puzzle, self._template), self._limits)
        if not result.passed:
            self._failed.inc()
            reason = "verify_timeout" if result.status == "timeout" else "verify_failed"
            yield _reject({**sample, "sat": puzzle.sat, "sol": puzzle.sol}, reason, result.reason, f"{STAGE}.verify")
            return
        self._verified.inc()
        yield puzzles.puzzle_record(
            puzzle, prompt_index=sample["prompt_index"], sample_index=sample["sample_index"],
            examples=[e.name for e in sample["examples"]], model=self._model, seed=sample["seed"],
            verify_seconds=round(result.duration_s, 3), stage=f"{STAGE}.verify", **_provenance(sample))


def keep_one_per_puzzle(element: tuple[str, Sequence[dict[str, Any]]]) -> Iterator[Any]:
    """The verified pair with the smallest id survives (deterministic); the others are duplicates."""
    _, records = element
    ordered = sorted(records, key=lambda r: r["id"])
    yield ordered[0]
    for r in ordered[1:]:
        yield beam.pvalue.TaggedOutput("rejected", rejected(
            r, record_kind=RecordKind.PUZZLE, reason="duplicate_puzzle", stage=f"{STAGE}.dedup",
            detail=f"same puzzle as {ordered[0]['id']}"))


def to_training_example(record: dict[str, Any], template: puzzles.SelfPlayPrompt) -> dict[str, Any]:
    puzzle = puzzles.Puzzle(record["name"], record["sat"], record["sol"], record["origin"])
    instruction, response = puzzles.training_pair(puzzle, template)
    return training_example(source="self_play", instruction=instruction, response=response, language="python",
                            snippet_id=record["id"], provenance={"puzzle_id": record["puzzle_id"], "name": record["name"]},
                            source_uri=record["source_uri"], source_row=record["source_row"])


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions) -> None:
    opts = options.view_as(SelfPlayOptions)
    output = options.view_as(OutputOptions).output.rstrip("/")
    model = options.view_as(EngineOptions).model
    run_seed = options.view_as(MethodOptions).run_seed
    plans = pipeline | "Plans" >> beam.Create(plan_prompts(options))
    requests = plans | "Requests" >> beam.Map(lambda kv: (kv[0], kv[1]["request"]))
    samples = (infer_and_join(requests, plans, handler_from_options(options), "Generate")
               | "Samples" >> beam.FlatMap(to_samples, opts.samples_per_prompt))
    parsed = samples | "Parse" >> beam.ParDo(ParsePuzzleFn()).with_outputs("rejected", main="puzzles")
    limits = SandboxLimits(timeout_s=opts.verify_timeout, cpu_s=max(1, int(opts.verify_timeout)))
    template = puzzles.load_self_play_prompt()
    verified = (parsed.puzzles
                | "Spread" >> beam.Reshuffle()
                | "Verify" >> beam.ParDo(VerifyPuzzleFn(limits, model, template)).with_outputs("rejected", main="verified"))
    distinct = (verified.verified
                | "KeyByPuzzle" >> beam.Map(lambda r: (r["puzzle_id"], r))
                | "GroupByPuzzle" >> beam.GroupByKey()
                | "KeepOne" >> beam.FlatMap(keep_one_per_puzzle).with_outputs("rejected", main="kept"))
    _ = distinct.kept | "WritePuzzles" >> WriteParquetShards(
        f"{output}/puzzles", RecordKind.PUZZLE, seed=None, shard_records=100_000)
    _ = (distinct.kept
         | "ToTrainingExamples" >> beam.Map(to_training_example, template)
         | "WriteTraining" >> WriteParquetShards(f"{output}/training/puzzles", RecordKind.TRAINING_EXAMPLE,
                                                 seed=run_seed, shard_records=100_000))
    _ = ((parsed.rejected, verified.rejected, distinct.rejected)
         | "AllRejected" >> beam.Flatten()
         | "WriteRejected" >> WriteParquetShards(f"{output}/rejected", RecordKind.REJECTED_RECORD, seed=None,
                                                 shard_records=100_000))


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = pipeline_options(argv)
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
    inside = engine_seconds(result)
    if inside is not None:
        summary["engine_seconds"] = round(inside, 2)
    write_index_atomic(f"{output}/summary.json", summary)
    print(json.dumps(summary, indent=2))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(argv, "python -m beam_pipelines.self_play", __doc__, run)


if __name__ == "__main__":
    sys.exit(main())
