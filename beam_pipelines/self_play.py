"""Self-play programming puzzles as in "Language Models Can Teach Themselves to Program Better" (ICLR 2023):
the model writes puzzles f, the reference's filters keep the usable ones, the model solves each with many
attempts, the sandbox keeps what verifies (f(g()) is exactly True, g's answer of f's type), and the verified
pairs become raw training text.

    inverse-instruct self-play --p3-dir ../shared/data/p3 --output runs/puzzles       # the paper preset
    inverse-instruct self-play --puzzle-preset seed --output runs/puzzles             # the project's f/g format

prompts -> RunInference (the shared engine) -> samples -> filter (sandbox) -> dedup -> solve prompts ->
RunInference (n attempts each) -> verify (sandbox) -> up to 8 distinct solutions per puzzle -> training text

With ``--p3-dir`` the filter also refuses a puzzle that is a P3 test puzzle (any instance of a test family) up to
formatting and renaming (``p3_test_puzzle``; ``transforms/selfplay/puzzle_fingerprint.py``): the model may
reproduce one from pre-training, and the loop evaluates on them. The index is built once, in the launcher; the
manifest records its size (``p3_test_puzzles_indexed``, 0 without ``--p3-dir``).

Outputs: ``puzzles/`` (solved puzzles with their solutions), ``training/puzzles/`` (training shards),
``rejected/`` (every sample and attempt that was not kept, with its reason), ``manifest.json`` (per-stage
counts, checked to balance) and ``summary.json``.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

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
from runners.engines.compile_choice import WorkEstimate
from runners.inference import infer_and_join
from runners.model_resolution import resolve_model
from runners.options import EngineOptions, engine_config_from_options, handler_from_options
from schemas.records import SCHEMA_VERSION, RecordKind
from transforms.execute.options import (
    SandboxOptions,
    require_isolation,
    sandbox_limits,
    sandbox_max_batch,
    sandbox_workers,
)
from transforms.instruct.options import MethodOptions
from transforms.instruct.prompts import TokenizerSource
from transforms.io.beam import WriteParquetShards
from transforms.io.filesystems import read_text
from transforms.io.options import SpillOptions, spill_dir
from transforms.selfplay import generate, plans, solve, training_text
from transforms.selfplay import puzzles as seed_format
from transforms.selfplay.beam import (
    FilterPuzzlesFn,
    GeneratedFn,
    KeepFirstPuzzleFn,
    SandboxSettings,
    SelectSolutionsFn,
    SolveAttempts,
    SolveSettings,
    TrainingExamplesFn,
    example_sort_key,
    generated_samples,
)
from transforms.selfplay.filters import trivial_preamble
from transforms.selfplay.options import SelfPlayOptions
from transforms.selfplay.p3 import load_p3
from transforms.selfplay.preset import load_preset
from transforms.selfplay.puzzle_fingerprint import fingerprint_index
from transforms.stage import REJECTED, StageOutput, flatten
from transforms.stats.accounting import CollectCounts, StageTally, WriteManifest, build_manifest
from transforms.stats.progress import LIVE
from transforms.stats.report import REPORT_NAME, write_report

PAPER_PRESET_NEEDS_P3 = ("--puzzle-preset paper builds its prompts from P3's training families: pass --p3-dir "
                         "(or use --puzzle-preset seed)")


def check_options(options: PipelineOptions) -> None:
    """Before run.json and any work: the settings parse, the counts and timeouts are positive, and the P3 folder
    (read whole) and solve prefix given are there."""
    opts = options.view_as(SelfPlayOptions)
    if opts.puzzle_preset == "paper" and not opts.p3_dir:
        raise JobConfigError(PAPER_PRESET_NEEDS_P3)
    with argument_errors():
        engine_config_from_options(options)
        sandbox_limits(options)
        sandbox_workers(options)
    low = [f"{flag} must be at least 1, got {value}" for flag, value in (
        ("--num-prompts", opts.num_prompts), ("--samples-per-prompt", opts.samples_per_prompt),
        ("--solve-attempts", opts.solve_attempts), ("--max-solutions", opts.max_solutions),
        ("--literal-runs", opts.literal_runs)) if value < 1]
    low += [f"{flag} must be more than 0 seconds, got {value:g}" for flag, value in (
        ("--judge-timeout", opts.judge_timeout), ("--verify-timeout", opts.verify_timeout)) if not value > 0]
    if low:
        raise JobConfigError("; ".join(low))
    require_paths({flag: path for flag, path in (("--p3-dir", opts.p3_dir), ("--solve-prefix", opts.solve_prefix))
                   if path})
    if opts.p3_dir:  # every file and field the job reads, and the solve prefix it builds when none is given
        try:
            solve.check_p3_folder(opts.p3_dir, with_prefix=not opts.solve_prefix)
        except ValueError as err:
            raise JobConfigError(f"--p3-dir: {err}") from err


def estimated_attempts(options: PipelineOptions, enough: int) -> WorkEstimate:
    """The round's puzzle samples, counted as solve attempts (each costs at least one: a longer shared prompt, up to
    200 tokens against 150), for the engine's compile choice. A lower bound: the puzzles the filters keep add up to
    ``--solve-attempts`` attempts each, and how many they keep is not known before the model writes them."""
    opts = options.view_as(SelfPlayOptions)
    return WorkEstimate(opts.num_prompts * opts.samples_per_prompt, "attempts",
                        f"{opts.num_prompts} prompts x {opts.samples_per_prompt} puzzle samples; each puzzle kept "
                        f"adds up to {opts.solve_attempts} solve attempts", bound="at least")


JOB = JobSpec("self-play", __doc__, (OutputOptions, SelfPlayOptions, SandboxOptions, MethodOptions, EngineOptions,
                                     SpillOptions),
              reads_only={MethodOptions: frozenset({"run_seed"})},  # sampling is SelfPlayOptions' own
              check=check_options, requests=estimated_attempts, workload="p3_solve")


def solve_prefix(opts: SelfPlayOptions, p3=None) -> str:
    """The solve prompt's few-shot prefix: the released file, P3's tutorials, or the seed puzzles."""
    preset = load_preset()
    if opts.solve_prefix:
        return solve.load_solve_prefix(opts.solve_prefix)
    if p3 is not None:
        return solve.build_solve_prefix(p3.train, preset.solve)
    return solve.seed_solve_prefix(seed_format.load_seed_puzzles(), strings=preset.solve)


def prompt_plans(options: PipelineOptions, p3=None) -> list[tuple[str, dict[str, Any]]]:
    """One keyed plan per prompt (built in the launcher, where the tokenizer counts the prompt budget)."""
    opts = options.view_as(SelfPlayOptions)
    engine = options.view_as(EngineOptions)
    preset = load_preset()
    count_tokens = None
    paper_pool = []
    if opts.puzzle_preset == "paper":
        if p3 is None:
            raise JobConfigError(PAPER_PRESET_NEEDS_P3)  # check_options refuses it before any work
        tokenizer = TokenizerSource(resolve_model(engine.model, engine.model_cache)).load()
        count_tokens = lambda text: len(tokenizer(text).input_ids)  # noqa: E731
        paper_pool = generate.generation_pool(p3.train)
    sampling = plans.Sampling(opts.samples_per_prompt, opts.puzzle_temperature, opts.puzzle_max_tokens,
                              tuple(preset.generation.stop) if opts.puzzle_preset == "paper"
                              else seed_format.load_self_play_prompt().stop,
                              top_k=opts.sample_top_k, ban_eos=not opts.allow_eos)
    return plans.generation_plans(
        opts.puzzle_preset, paper_pool=paper_pool, seed_pool=seed_format.example_pool(opts.p3_dir),
        count_tokens=count_tokens, prompt_budget=min(preset.generation.max_tokens, engine.max_model_len),
        num_prompts=opts.num_prompts, shots=opts.shots, sampling=sampling,
        run_seed=options.view_as(MethodOptions).run_seed, preset=preset)


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions) -> dict[str, Any]:
    opts = options.view_as(SelfPlayOptions)
    output = options.view_as(OutputOptions).output.rstrip("/")
    engine = options.view_as(EngineOptions)
    run_seed = options.view_as(MethodOptions).run_seed
    preset = load_preset()
    p3 = load_p3(opts.p3_dir) if opts.p3_dir else None
    workers_here = workers_share_cwd(options)
    isolated = require_isolation(options, workers_here)
    limits, workers = sandbox_limits(options), sandbox_workers(options, workers_here)
    judge = SandboxSettings(limits.within(opts.judge_timeout), workers, not isolated)
    verify = SandboxSettings(limits.within(opts.verify_timeout), workers, not isolated)
    handler = handler_from_options(options, cache_root=f"{output}/cache")
    tallies: list[StageTally] = []
    dead_letters = []

    def stage(name, inputs, result: StageOutput, fanout: int = 1) -> StageOutput:
        tallies.append(StageTally.of(name, inputs, result, fanout))
        dead_letters.append(result.rejected)
        return result

    plan_list = prompt_plans(options, p3)
    LIVE.add("self_play.generate.requests.generate", len(plan_list))
    prompts = pipeline | "Plans" >> beam.Create(plan_list)
    requests = prompts | "Requests" >> beam.Map(lambda kv: (kv[0], kv[1]["request"]))
    samples = (infer_and_join(requests, prompts, handler, "Generate")
               | "Samples" >> beam.FlatMap(generated_samples, opts.samples_per_prompt))
    generated = stage("generate", prompts, GeneratedFn().apply(samples, "Generated"), opts.samples_per_prompt)

    seed_examples = seed_format.example_pool(opts.p3_dir) if opts.puzzle_preset == "seed" else ()
    # Every P3 test instance's fingerprint, once per job: a generated puzzle among them is refused (p3_test_puzzle).
    test_index = fingerprint_index((p.name, p.f) for p in p3.test_instances) if p3 is not None else {}
    filtered = stage("filter", generated.main, StageOutput.of(
        generated.main
        | "SpreadSamples" >> beam.Reshuffle()
        | "BatchSamples" >> beam.BatchElements(min_batch_size=1, max_batch_size=sandbox_max_batch(judge.workers))
        | "Filter" >> beam.ParDo(FilterPuzzlesFn(preset.filters, opts.trivial_reject_rate, run_seed, judge,
                                                 engine.model, seed_examples, test_index)
                                 ).with_outputs(REJECTED, main="main")))
    unique = stage("dedup", filtered.main, StageOutput.of(
        filtered.main
        | "KeyByPuzzle" >> beam.Map(lambda r: (r["id"], r))
        | "GroupByPuzzle" >> beam.GroupByKey()
        | "KeepFirst" >> beam.ParDo(KeepFirstPuzzleFn()).with_outputs(REJECTED, main="main")))

    solve_sampling = plans.Sampling(
        opts.solve_attempts, opts.solve_temperature if opts.solve_temperature is not None else opts.puzzle_temperature,
        opts.solve_max_tokens, tuple(preset.solve.stop), top_k=opts.sample_top_k, ban_eos=not opts.allow_eos)
    settings = SolveSettings(solve_prefix(opts, p3), solve_sampling, run_seed, preset.filters.judge_preamble,
                             stage="self_play.solve_plan",
                             literal_preamble=trivial_preamble(preset.filters),  # the training text's names
                             literal_runs=opts.literal_runs)
    attempted = stage("solve_plan", unique.main, unique.main | "Solve" >> SolveAttempts(handler, settings, verify))
    selected = attempted.main | "Select" >> beam.ParDo(SelectSolutionsFn(opts.max_solutions)).with_outputs(
        REJECTED, "attempts_kept", "attempts_rejected", main="main")
    stage("solve", attempted.main, StageOutput(selected.attempts_kept, selected.attempts_rejected),
          opts.solve_attempts)
    solved = stage("select", attempted.main, StageOutput(selected.main, selected[REJECTED]))

    spill = spill_dir(options)
    wrote_puzzles = solved.main | "WritePuzzles" >> WriteParquetShards(
        f"{output}/puzzles", RecordKind.PUZZLE, seed=None, shard_records=100_000, spill_dir=spill)
    cap = opts.example_cap if opts.example_cap is not None else training_text.example_cap(opts.iteration,
                                                                                          preset.training)
    built = solved.main | "TrainingExamples" >> beam.ParDo(TrainingExamplesFn(preset, opts.training_format,
                                                                              seed_format.load_self_play_prompt()))
    examples = (built
                | "KeyExample" >> beam.Map(lambda e: (e["id"], e))
                | "GroupExample" >> beam.CombinePerKey(lambda group: min(group, key=lambda e: e["source_row"]))
                | "Examples" >> beam.Values())
    kept_keys = (examples
                 | "CapKeys" >> beam.Map(example_sort_key, run_seed)
                 | "Cap" >> beam.combiners.Top.Smallest(cap)
                 | "CapSet" >> beam.Map(frozenset))
    capped = examples | "ApplyCap" >> beam.Filter(
        lambda e, keep: example_sort_key(e, run_seed) in keep, keep=beam.pvalue.AsSingleton(kept_keys))
    # Both drop by design and write nothing, but are counted: equal examples (one id) kept once, and the cap.
    tallies.append(StageTally("training_dedup", built, examples, None, unwritten_reason="duplicate_example"))
    tallies.append(StageTally("training_cap", examples, capped, None, unwritten_reason="over_example_cap"))
    wrote_training = capped | "WriteTraining" >> WriteParquetShards(
        f"{output}/training/puzzles", RecordKind.TRAINING_EXAMPLE, seed=run_seed, shard_records=100_000,
        spill_dir=spill)
    wrote_rejected = flatten(dead_letters, "AllRejected") | "WriteRejected" >> WriteParquetShards(
        f"{output}/rejected", RecordKind.REJECTED_RECORD, seed=None, shard_records=100_000, spill_dir=spill)
    count_examples = capped | "CountExamples" >> beam.combiners.Count.Globally()
    specs = [t.spec() for t in tallies]
    extra = {
        "schema_version": SCHEMA_VERSION, "job": "self-play", "stage_order": [t.name for t in tallies],
        "model": engine.model, "engine": engine_config_from_options(options).engine,
        "puzzle_preset": opts.puzzle_preset, "p3_dir": opts.p3_dir, "prompts": len(plan_list),
        "prompt_examples": [len(p["examples"]) for _, p in plan_list],
        "settings": {k: getattr(opts, k) for k in (
            "samples_per_prompt", "puzzle_temperature", "puzzle_max_tokens", "trivial_reject_rate", "judge_timeout",
            "verify_timeout", "literal_runs", "solve_attempts", "solve_temperature", "solve_max_tokens",
            "max_solutions", "training_format", "iteration")} | {"example_cap": cap, "run_seed": run_seed},
        "isolated": isolated, "p3_test_puzzles_indexed": len(test_index),
    }
    _ = (pipeline
         | "Accounting" >> CollectCounts(tallies)
         | "Manifest" >> beam.Map(lambda counts, n: build_manifest(counts, specs, {**extra, "training_examples": n}),
                                  n=beam.pvalue.AsSingleton(count_examples))
         | "WriteManifest" >> WriteManifest(f"{output}/manifest.json",
                                            [wrote_puzzles, wrote_training, wrote_rejected]))
    return extra


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = pipeline_options(argv, JOB)
    output = options.view_as(OutputOptions).output.rstrip("/")
    # A re-run that fails must not leave the previous run's marks vouching for outputs it partly rewrote.
    remove_finished_marks(output, ["manifest.json", "summary.json", REPORT_NAME])
    result, _, elapsed = run_timed(options, build_pipeline, [f"self_play.{s}" for s in (
        "generate", "filter", "dedup", "solve_plan", "solve", "select")])
    manifest = json.loads(read_text(f"{output}/manifest.json"))
    stages = manifest["stages"]
    summary = {
        "model": manifest["model"], "puzzle_preset": manifest["puzzle_preset"], "prompts": manifest["prompts"],
        "samples": stages["generate"]["records_in"] * stages["generate"]["fanout"],
        "generated": stages["generate"]["records_out"],
        "kept_by_filter": stages["filter"]["records_out"], "filter_rejected": stages["filter"]["rejected"],
        "distinct_puzzles": stages["dedup"]["records_out"], "attempted": stages["solve_plan"]["records_out"],
        "attempts": stages["solve"]["records_in"] * stages["solve"]["fanout"],
        "solved_puzzles": stages["select"]["records_out"],
        "verified_pairs": stages["solve"]["records_out"], "training_examples": manifest["training_examples"],
        "balanced": manifest["balanced"], "isolated": manifest["isolated"], "wall_seconds": round(elapsed, 2),
    }
    write_summary(output, summary, result)
    print(f"report: {write_report(output)}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(argv, JOB, run)


if __name__ == "__main__":
    from beam_pipelines.cli import exit_process

    exit_process(main())
