"""The Inverse-Instruct main job.

    python -m beam_pipelines.inverse_instruct --output runs/demo --limit 50

read -> extract -> dedup [-> summarize -> score -> select -> decontaminate -> near-dedup -> shards]

``--help`` lists every option. ``--runner`` and the other Beam options pass through untouched; without
``--runner`` the job runs on the in-process Python runner (DirectRunner).
"""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.launch import (
    JobConfigError,
    JobSpec,
    argument_errors,
    counter_totals,
    engine_seconds,
    job_main,
    pipeline_options,
    remove_finished_marks,
    require_paths,
    run_timed,
)
from beam_pipelines.options import PROFILES, MainJobOptions, OutputOptions
from runners.model_resolution import resolve_model
from runners.options import EngineOptions, engine_config_from_options, handler_from_options
from schemas.records import SCHEMA_VERSION, RecordKind
from transforms.decontam.beam import Decontaminate
from transforms.decontam.benchmarks import PAPER_BENCHMARKS, check_benchmark_files, missing_paper_benchmarks_hint
from transforms.decontam.options import BenchmarkOptions, DecontamOptions, decontam_config, guarded_benchmarks
from transforms.dedup.beam import DedupSnippets, NearDedup
from transforms.dedup.options import DedupOptions, neardedup_config
from transforms.extract.beam import ExtractCode
from transforms.extract.options import ExtractionOptions, extraction_config
from transforms.extract.snippets import as_occurrence, snippet_from_pair
from transforms.instruct.beam import Select, SelfEvaluate, Summarize
from transforms.instruct.options import MethodOptions, method_config
from transforms.instruct.prompts import TokenizerSource, resolve_preset
from transforms.instruct.workload import RequestEstimate, estimate_requests
from transforms.io.beam import (
    ReadSourcePairs,
    ReadSourceTree,
    WriteParquetShards,
    WriteTrainingShards,
    limit_records,
    matched_corpus_files,
    source_tree_files,
)
from transforms.io.filesystems import read_text
from transforms.io.options import (
    CorpusOptions,
    ShardOptions,
    SpillOptions,
    check_corpus_options,
    corpus_mapping,
    shard_bounds,
    spill_dir,
)
from transforms.io.parquet import read_rows, write_index_atomic
from transforms.io.readers import corpus_pairs, default_source_root, source_tree_pairs
from transforms.stage import StageOutput
from transforms.stats.accounting import CollectCounts, StageTally, WriteManifest, build_manifest
from transforms.stats.report import REPORT_NAME, write_report

PROMPT_CODE_NEEDS_PAPER_EXTRACTION = (
    "--prompt-code reference shows the reference's raw slice of each response, which only the paper extraction "
    "policy computes: add --extraction-policy paper (or --profile paper)")


def check_options(options: PipelineOptions) -> None:
    """Before run.json and any work: every option the job reads parses, the corpus can be read as configured and
    every benchmark file it decontaminates against is there and loads, with items (``JobConfigError``,
    ``CorpusConfigError``)."""
    job = options.view_as(MainJobOptions)
    with argument_errors():
        extraction = extraction_config(options)
        method = method_config(options)
        decontam = decontam_config(options)
        neardedup_config(options)
        shard_bounds(options.view_as(ShardOptions))
        resolve_preset(method.preset)  # at every --stages: run.json records it, and a resume may run the rest
        if job.stages != "extract":
            engine_config_from_options(options)
        benchmarks = []
        if decontam is not None and (job.stages == "all" or job.decontam_source):
            benchmarks, _ = guarded_benchmarks(options, paper=job.profile == "paper")
    if method.prompt_code == "reference" and extraction.policy != "paper":
        raise JobConfigError(PROMPT_CODE_NEEDS_PAPER_EXTRACTION)
    require_paths({f"--benchmark {spec.name}={spec.path}": spec.path for spec in benchmarks if spec.path})
    with argument_errors():  # a malformed or empty benchmark file, not a worker's traceback once the job runs
        check_benchmark_files(benchmarks)
    check_corpus_options(options)


def estimated_requests(options: PipelineOptions, enough: int) -> RequestEstimate | None:
    """The candidate instructions the job will generate (each also judged), estimated from the first records of
    its corpus (``transforms.instruct.workload``); None under ``--stages extract``, which makes no request."""
    if options.view_as(MainJobOptions).stages == "extract":
        return None
    corpus = options.view_as(CorpusOptions)
    if corpus.input:
        mapping = corpus_mapping(options)
        # check_options validated every file already
        pairs = corpus_pairs(matched_corpus_files(corpus.input), mapping, corpus.input_format)
    else:
        pairs = source_tree_pairs(source_tree_files(corpus.source_tree or default_source_root()))
    extraction, dedup = extraction_config(options), options.view_as(DedupOptions).dedup

    def snippet_key(pair: dict[str, Any]) -> str | None:
        snippet = snippet_from_pair(pair, extraction)
        if not isinstance(snippet, dict):
            return None
        return snippet["id"] if dedup else as_occurrence(snippet)["id"]

    return estimate_requests(pairs, snippet_key, method_config(options).sampling.num_candidates, corpus.limit,
                             enough)


JOB = JobSpec("generate", __doc__, (
    OutputOptions, MainJobOptions, CorpusOptions, ExtractionOptions, MethodOptions, EngineOptions, BenchmarkOptions,
    DecontamOptions, DedupOptions, ShardOptions, SpillOptions,
), profiles=PROFILES, check=check_options, requests=estimated_requests)


def profile_settings(profile: str) -> dict[str, Any]:
    """The settings a profile changes, as the manifest records them."""
    settings: dict[str, Any] = {}
    for flag in PROFILES[profile]:
        name, _, value = flag.lstrip("-").partition("=")
        settings[name] = value if value else True
    return settings

LOG = logging.getLogger("inverse_instruct")
MANIFEST = "manifest.json"
STAGE_ORDER = ["read", "limit", "extract", "dedup", "decontam_source", "summarize", "self_evaluate", "select",
               "decontam", "near_dedup", "shards", "decontam_original"]


def decontam_benchmarks(options: PipelineOptions, profile: str, decontam_on: bool) -> tuple[list, list[str]]:
    """The benchmarks every decontamination of the job checks, and the paper's (``PAPER_BENCHMARKS``) it does not.

    Under ``--profile paper``: HumanEval (it ships) and every ``--benchmark`` given; each paper benchmark without a
    file is named in a warning and in the manifest, and the run goes on (only HumanEval is at hand offline)."""
    if not decontam_on:
        return [], list(PAPER_BENCHMARKS)
    paper = profile == "paper"
    specs, unchecked = guarded_benchmarks(options, paper=paper)
    if paper and unchecked:
        LOG.warning("--profile paper: the paper's decontamination also guards %s, which this run does NOT check (no "
                    "file given); it checks %s. Give them as %s", ", ".join(unchecked),
                    ", ".join(spec.name for spec in specs), missing_paper_benchmarks_hint(unchecked))
    return specs, unchecked


def corpus_description(options: PipelineOptions) -> dict[str, Any]:
    corpus = options.view_as(CorpusOptions)
    if corpus.input:
        return {
            "kind": "pairs",
            "input": corpus.input,
            "format": corpus.input_format,
            "columns": {
                "instruction": corpus.instruction_column,
                "response": corpus.response_column,
                "input": corpus.input_column,
            },
            "limit": corpus.limit,
        }
    return {"kind": "source_tree", "root": corpus.source_tree or default_source_root(), "limit": corpus.limit}


def read_corpus(pipeline: beam.Pipeline, options: PipelineOptions) -> StageOutput:
    corpus = options.view_as(CorpusOptions)
    if corpus.input:
        return pipeline | "Read" >> ReadSourcePairs(corpus.input, corpus_mapping(options), corpus.input_format)
    return pipeline | "ReadSourceTree" >> ReadSourceTree(corpus.source_tree or default_source_root())


def _write(pcoll, output: str, name: str, kind: RecordKind, options: PipelineOptions, label: str):
    """The writer's output: its index, once the shards are written."""
    per_file = options.view_as(MainJobOptions).output_records_per_file
    return pcoll | label >> WriteParquetShards(f"{output}/{name}", kind, seed=None, shard_records=per_file,
                                               spill_dir=spill_dir(options))


def _distinct_snippets(selected, label: str):
    """Selected pairs counted per snippet (``--top-k`` may keep several per snippet)."""
    return selected | f"{label}Ids" >> beam.Map(lambda r: r["snippet_id"]) | f"{label}Distinct" >> beam.Distinct()


def build_pipeline(pipeline: beam.Pipeline, options: PipelineOptions) -> dict[str, Any]:
    """Compose the stages on ``pipeline``. Returns the stage tallies and the manifest's static part."""
    job = options.view_as(MainJobOptions)
    output = options.view_as(OutputOptions).output.rstrip("/")
    corpus = options.view_as(CorpusOptions)
    tallies: list[StageTally] = []
    dead_letters = []
    writers = []  # each writer's output: the manifest waits for all of them
    outputs = {"snippets": "snippets/", "rejected": "rejected/"}
    dedup_opts = options.view_as(DedupOptions)
    decontam = decontam_config(options)
    decontam_on = decontam is not None
    # What this run's stages check: nothing at --stages extract/generate without --decontam-source.
    decontam_runs = decontam_on and (job.stages == "all" or job.decontam_source)
    benchmarks, paper_unchecked = decontam_benchmarks(options, job.profile, decontam_runs)
    emit_original = options.view_as(ShardOptions).emit_original
    extra: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "corpus": corpus_description(options),
        "extraction": _jsonable(dataclasses.asdict(extraction_config(options))),
        "stages_run": job.stages,
        "profile": job.profile,
        "profile_settings": profile_settings(job.profile),
        "switches": {"postfilters": options.view_as(MethodOptions).postfilters, "dedup": dedup_opts.dedup,
                     "decontamination": ",".join(decontam.methods) if decontam_on else "off",
                     "near_dedup": dedup_opts.neardedup,
                     "emit_original": emit_original},
        "decontam_benchmarks": {
            "checked": [spec.name for spec in benchmarks],
            "files": {spec.name: spec.path for spec in benchmarks if spec.path},
            "paper_not_checked": paper_unchecked,  # of PAPER_BENCHMARKS, what the paper guards
        },
    }
    if method_config(options).prompt_code == "reference" and extraction_config(options).policy != "paper":
        raise JobConfigError(PROMPT_CODE_NEEDS_PAPER_EXTRACTION)  # check_options refuses it before any work

    def stage(name: str, inputs, result: StageOutput, fanout: int = 1) -> StageOutput:
        tallies.append(StageTally.of(name, inputs, result, fanout))
        dead_letters.append(result.rejected)
        return result

    read = read_corpus(pipeline, options)
    stage("read", (read.main, read.rejected), read)  # counted part by part: no Flatten holding every record
    source_pairs = pairs = read.main
    if corpus.limit is not None:
        limited = limit_records(pairs, corpus.limit)
        tallies.append(StageTally("limit", pairs, limited, None))
        source_pairs = pairs = limited

    extracted = stage("extract", pairs, pairs | "ExtractCode" >> ExtractCode(extraction_config(options)))
    snippets = extracted.main
    if dedup_opts.dedup:
        snippets = stage("dedup", extracted.main, extracted.main | "Dedup" >> DedupSnippets(spill_dir(options))).main
    else:  # equal code in two rows stays two snippets, each with its own id (the joins below key on it)
        snippets = snippets | "OccurrenceIds" >> beam.Map(as_occurrence)

    if job.decontam_source and decontam_on:
        cleaned = stage("decontam_source", snippets, snippets | "DecontamSource" >> Decontaminate(
            benchmarks=benchmarks, config=decontam,
            columns=("original_instruction", "code"), stage="decontam_source", record_kind=RecordKind.CODE_SNIPPET))
        snippets = cleaned.main
    writers.append(_write(snippets, output, "snippets", RecordKind.CODE_SNIPPET, options, "WriteSnippets"))

    if job.stages != "extract":
        method = method_config(options)
        engine = engine_config_from_options(options)
        handler = handler_from_options(options, cache_root=f"{output}/cache")
        model_dir = resolve_model(engine.model, engine.model_cache)
        tokenizer = TokenizerSource.of_model(engine.model, engine.model_cache)  # resolved again on each worker
        preset = resolve_preset(method.preset)
        extra.update({
            "model": engine.model,
            "model_dir": model_dir,
            "engine": _jsonable(dataclasses.asdict(engine)),
            "preset": preset.name,
            "preset_hash": preset.hash,
            "method": _jsonable(method.to_json_dict()),
        })
        summarized = stage("summarize", snippets, snippets | "Summarize" >> Summarize(
            handler, model_id=engine.model, preset=preset, sampling=method.sampling, filters=method.filters,
            tokenizer_source=tokenizer, prompt_code=method.prompt_code), method.sampling.num_candidates)
        scored = stage("self_evaluate", summarized.main, summarized.main | "SelfEvaluate" >> SelfEvaluate(
            handler, preset=preset, scoring_mode=method.scoring_mode, tokenizer_source=tokenizer))
        writers.append(_write(scored.main, output, "scored", RecordKind.SCORED_PAIR, options, "WriteScored"))
        outputs["scored"] = "scored/"
        chosen = {"snippets": snippets, "scored": scored.main} | "Select" >> Select(method.selection)
        stage("select", snippets, StageOutput(_distinct_snippets(chosen.main, "Selected"), chosen.rejected))
        selected = chosen.main

        if job.stages == "all":
            if decontam_on:
                clean = stage("decontam", selected, selected | "Decontaminate" >> Decontaminate(
                    benchmarks=benchmarks, config=decontam,
                    columns=("instruction", "code"), stage="decontam", record_kind=RecordKind.SCORED_PAIR))
                selected = clean.main
            near = neardedup_config(options, columns=("instruction", "code"))
            if near is not None:
                unique = stage("near_dedup", selected, selected | "NearDedup" >> NearDedup(
                    columns=near.columns, config=near, stage="near_dedup", record_kind=RecordKind.SCORED_PAIR))
                selected = unique.main
            # Original examples are decontaminated as they are written (instruction and full response), against
            # what the pairs are: --decontam-source checked only the snippet, and --emit-original all writes every
            # pair of the corpus, extracted or not.
            check_originals = Decontaminate(
                benchmarks=benchmarks, config=decontam, columns=("instruction", "response"),
                stage="decontam_original", record_kind=RecordKind.TRAINING_EXAMPLE) if decontam_on else None
            shards = selected | "TrainingShards" >> WriteTrainingShards.from_options(
                f"{output}/training", options, run_seed=method.sampling.run_seed,
                original_snippets=snippets, source_pairs=source_pairs, check_originals=check_originals)
            originals = {"kept": snippets, "all": source_pairs}.get(emit_original)
            shard_inputs = (selected, originals) if originals is not None else selected
            writers += [shards[name] for name in ("generated", "original") if name in shards]
            stage("shards", shard_inputs, StageOutput(shards["made"], shards["rejected"]))
            if "original_check" in shards:
                stage("decontam_original", shards["original_made"], shards["original_check"])
            outputs["training"] = "training/"
        writers.append(_write(selected, output, "selected", RecordKind.SCORED_PAIR, options, "WriteSelected"))
        outputs["selected"] = "selected/"

    # A tuple: the writer packs each part before flattening them (see WriteParquetShards).
    writers.append(_write(tuple(dead_letters), output, "rejected", RecordKind.REJECTED_RECORD, options,
                          "WriteRejected"))

    specs = [t.spec() for t in tallies]
    extra["stage_order"] = [t.name for t in tallies]
    extra["outputs"] = outputs
    (
        pipeline
        | "Accounting" >> CollectCounts(tallies)
        | "Manifest" >> beam.Map(lambda counts: build_manifest(counts, specs, extra))
        | "WriteManifest" >> WriteManifest(f"{output}/{MANIFEST}", writers)
    )
    return {"tallies": tallies, "manifest": extra}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset, tuple, list)):
        return (sorted(_jsonable(v) for v in value) if isinstance(value, (set, frozenset))
                else [_jsonable(v) for v in value])
    return value


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    options = pipeline_options(argv, JOB)
    output = options.view_as(OutputOptions).output.rstrip("/")
    # Written again only once every output of this run is; a failed re-run leaves none vouching for old counts.
    remove_finished_marks(output, [MANIFEST, REPORT_NAME])
    result, _, elapsed = run_timed(options, build_pipeline, STAGE_ORDER,
                                   uses_engine=options.view_as(MainJobOptions).stages != "extract")
    manifest = json.loads(read_text(f"{output}/{MANIFEST}"))
    manifest["wall_seconds"] = round(elapsed, 2)
    inside = engine_seconds(result)
    if inside is not None:
        manifest["engine_seconds"] = round(inside, 2)
        manifest["engine_share"] = round(inside / elapsed, 3) if elapsed else None
    cache = counter_totals(result, "inference_cache.")
    if cache:
        manifest["inference_cache"] = {"hits": cache.get("hits", 0), "misses": cache.get("misses", 0),
                                        "seconds": round(cache.get("overhead_us", 0) / 1e6, 3)}
    selected = read_selected(output, manifest)
    if selected:
        manifest["selected_scores"] = score_distribution([r["score"] for r in selected])
    failed = engine_failed_everywhere(manifest)
    if failed:
        manifest["engine_failed"] = failed
    write_index_atomic(f"{output}/{MANIFEST}", manifest)
    print_summary(manifest, output, selected)
    print(f"report: {write_report(output)}")
    return manifest


ENGINE_STAGES = ("summarize", "self_evaluate")


def engine_failed_everywhere(manifest: dict[str, Any]) -> dict[str, int] | None:
    """``{stage: requests}`` when an engine stage got records and every one of them came back an engine error (a
    ``--max-model-len`` that holds no prompt, a model that fails every request): the run balances, but it has
    nothing to train on, and exits 1. None otherwise."""
    failed = {}
    for name in ENGINE_STAGES:
        stage = manifest.get("stages", {}).get(name)
        if stage and stage["records_in"] and not stage["records_out"] and set(stage["rejected"]) == {"engine_error"}:
            failed[name] = stage["rejected"]["engine_error"]
    return failed or None


def read_selected(output: str, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's selected pairs by snippet id; none when its stages wrote no ``selected/``."""
    if "selected" not in manifest.get("outputs", {}):
        return []
    rows = read_rows(f"{output}/selected", ["snippet_id", "instruction", "code", "score"])
    return sorted(rows, key=lambda r: r["snippet_id"])


def score_distribution(scores: list[float]) -> dict[str, float]:
    ordered = sorted(scores)

    def quantile(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

    return {
        "n": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 4),
        "min": round(ordered[0], 4),
        "p25": quantile(0.25),
        "median": quantile(0.5),
        "p75": quantile(0.75),
        "max": round(ordered[-1], 4),
    }


def print_summary(manifest: dict[str, Any], output: str, selected: Sequence[dict[str, Any]] = (),
                  examples: int = 3) -> None:
    wall = manifest.get("wall_seconds", "?")
    engine = f", {manifest['engine_seconds']} s inside the engine" if "engine_seconds" in manifest else ""
    lines = [f"inverse-instruct: output in {output} ({wall} s wall{engine})"]
    for name in manifest.get("stage_order", manifest["stages"]):
        stage = manifest["stages"][name]
        rejected = ", ".join(f"{k}={v}" for k, v in stage["rejected"].items()) or "none"
        mark = "ok" if stage["balanced"] else "UNBALANCED"
        lines.append(f"  {name:<17} in={stage['records_in']:<8} out={stage['records_out']:<8} "
                     f"rejected: {rejected} [{mark}]")
    checked = manifest.get("decontam_benchmarks", {}).get("checked")
    unchecked = manifest.get("decontam_benchmarks", {}).get("paper_not_checked")
    if manifest.get("profile") == "paper" and checked and unchecked:
        lines.append(f"  decontamination: checked {', '.join(manifest['decontam_benchmarks']['checked'])}; NOT the "
                     f"paper's {', '.join(unchecked)} (give them as --benchmark NAME=PATH)")
    if "inference_cache" in manifest:
        cache = manifest["inference_cache"]
        lines.append(f"  inference cache: {cache['hits']} hits, {cache['misses']} misses (answered by the engine), "
                     f"{cache.get('seconds', 0)} s of cache work")
    if "selected_scores" in manifest:
        dist = manifest["selected_scores"]  # in score_distribution's order: the manifest's JSON sorts its keys
        order = ("n", "mean", "min", "p25", "median", "p75", "max")
        lines.append("  selected scores: " + ", ".join(f"{k}={dist[k]}" for k in sorted(dist, key=(
            lambda k: order.index(k) if k in order else len(order)))))
    for row in list(selected)[:examples]:
        first_line = row["code"].strip().splitlines()[0][:70]
        lines.append(f"  example (score {row['score']:.3f}): {row['instruction'][:160]!r}\n      code: {first_line}")
    if manifest.get("engine_failed"):
        where = ", ".join(f"{name}: {n} engine errors" for name, n in manifest["engine_failed"].items())
        lines.append(f"  FAILED: every engine request failed ({where}); the errors are in {output}/rejected "
                     "(reason engine_error). Exit code 1.")
    print("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    return job_main(argv, JOB, run)


if __name__ == "__main__":
    from beam_pipelines.cli import exit_process

    exit_process(main())
