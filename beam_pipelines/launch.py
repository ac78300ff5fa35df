"""What every job's launcher shares: its options (checked before any work), the runner default, a timed run, the
time spent inside the engine, ``--help`` and ``main``.

A job declares the ``PipelineOptions`` classes it reads (:class:`JobSpec`). An option that neither those
classes nor Beam itself (every runner's options included) defines stops the job before any work, with a "did
you mean" suggestion: ``--limt 5`` must not silently process the whole corpus on a GPU cluster.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """A job: its subcommand name, its description (the module docstring) and the option classes it reads."""

    name: str
    description: str | None
    option_classes: tuple[type[PipelineOptions], ...]
    profiles: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)  # --profile NAME -> its flags
    # Option classes the job reads only a few options of (their dests): the others are unknown options to it,
    # refused like a typo, instead of being accepted, recorded in run.json and ignored.
    reads_only: Mapping[type[PipelineOptions], frozenset[str]] = dataclasses.field(default_factory=dict)

    @property
    def prog(self) -> str:
        return f"inverse-instruct {self.name}"


class UnknownOptionError(ValueError):
    """An option the job does not know; raised before the pipeline is built."""


class RunConflictError(ValueError):
    """The output directory holds a run made with other arguments; raised before any work."""


RUN_FILE = "run.json"
# Engine options that change how fast the engine answers, never what: runners.options.result_settings leaves them
# out of the inference cache's key (runners/options.py names no such list; tests/beam_pipelines/test_launch.py
# checks this one against result_settings).
SPEED_ONLY_ENGINE_OPTIONS = frozenset({
    "kv_cache_gb", "gpu_memory_utilization", "max_num_seqs", "tensor_parallel_size", "enforce_eager", "vllm_host",
    "cpu_runtime_preload", "model_cache", "torch_threads",
})
# Options that change how a job runs, never what it writes: a re-run may change them freely.
NON_RESULT_OPTIONS = frozenset({
    "output", "quiet", "verbose", "progress_interval", "no_cache", "inference_cache", "engine_load_log",
    "sandbox_workers", "worker_torch_threads", "min_batch_size", "max_batch_size", "accelerator",
}) | SPEED_ONLY_ENGINE_OPTIONS


def beam_option_classes() -> list[type[PipelineOptions]]:
    """Every ``PipelineOptions`` subclass Beam itself defines (standard, runner, worker and cloud options)."""
    import apache_beam.options.pipeline_options  # noqa: F401  (defines the runners' option classes)

    found: list[type[PipelineOptions]] = []

    def walk(cls):
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("apache_beam.") and sub not in found:
                found.append(sub)
            walk(sub)

    walk(PipelineOptions)
    return found


def _parser(job: JobSpec, with_beam: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=job.prog, description=job.description, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     conflict_handler="resolve")
    for cls in job.option_classes:
        only = job.reads_only.get(cls)
        cls._add_argparse_args(parser if only is None else _OnlyDests(parser, only))
    if with_beam:
        beam_group = parser.add_argument_group("Apache Beam (runner, workers, cloud); see Beam's documentation")
        for cls in beam_option_classes():
            cls._add_argparse_args(_GroupAdapter(parser, beam_group))
    return parser


class _OnlyDests:
    """Lets an options class add only the flags whose dest is in ``dests`` (``JobSpec.reads_only``)."""

    def __init__(self, target, dests: frozenset[str]):
        self._target, self._dests = target, dests

    def add_argument(self, *args, **kwargs):
        flag = next((a for a in args if a.startswith("--")), args[0])
        dest = kwargs.get("dest") or flag.lstrip("-").replace("-", "_")
        if dest in self._dests:
            return self._target.add_argument(*args, **kwargs)
        return None

    def add_argument_group(self, *args, **kwargs):
        return _OnlyDests(self._target.add_argument_group(*args, **kwargs), self._dests)

    def add_mutually_exclusive_group(self, *args, **kwargs):
        return _OnlyDests(self._target.add_mutually_exclusive_group(*args, **kwargs), self._dests)


class _GroupAdapter:
    """Lets a Beam options class add its flags into one help group (it calls add_argument on a parser)."""

    def __init__(self, parser: argparse.ArgumentParser, group):
        self._parser, self._group = parser, group

    def add_argument(self, *args, **kwargs):
        return self._group.add_argument(*args, **kwargs)

    def add_argument_group(self, *args, **kwargs):
        return self

    def add_mutually_exclusive_group(self, *args, **kwargs):
        return self

    def add_value_provider_argument(self, *args, **kwargs):
        # Beam's templated options; here they are plain string options.
        kwargs.pop("type", None)
        return self._group.add_argument(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._parser, name)


def check_known_options(argv: Sequence[str], job: JobSpec) -> None:
    """Raise :class:`UnknownOptionError` naming every option neither the job nor Beam defines."""
    parser = _parser(job)
    _, unknown = parser.parse_known_args(list(argv))
    flags = [arg for arg in unknown if arg.startswith("-") and arg != "--"]
    if not flags:
        return
    known = sorted({s for action in parser._actions for s in action.option_strings if s.startswith("--")})
    lines = []
    for flag in flags:
        name = flag.split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        lines.append(f"  {name}{hint}")
    raise UnknownOptionError(f"{job.prog}: unknown option{'s' if len(lines) > 1 else ''}:\n" + "\n".join(lines)
                             + f"\nSee `{job.prog} --help` for the options of this job.")


def result_arguments(options: PipelineOptions, job: JobSpec) -> dict[str, Any]:
    """The values of the job's options that decide what it writes."""
    values: dict[str, Any] = {}
    for cls in job.option_classes:
        only = job.reads_only.get(cls)
        values.update({k: v for k, v in options.view_as(cls).get_all_options(current_only=True).items()
                       if only is None or k in only})
    return {k: v for k, v in sorted(values.items()) if k not in NON_RESULT_OPTIONS}


def guard_output(options: PipelineOptions, job: JobSpec) -> None:
    """Record the job's arguments in ``<output>/run.json``; refuse, before any work, to write into a directory
    that holds a run made with other arguments (a re-run with the same ones continues it, cache and all)."""
    from beam_pipelines.options import OutputOptions
    from transforms.io.filesystems import atomic_write, read_text

    output = options.view_as(OutputOptions).output.rstrip("/")
    current = {"job": job.name, "arguments": json.loads(json.dumps(result_arguments(options, job), default=str))}
    try:
        previous = json.loads(read_text(f"{output}/{RUN_FILE}"))
    except (FileNotFoundError, OSError, ValueError):
        previous = None
    if previous is not None:  # a run.json written before an option joined NON_RESULT_OPTIONS or left the options
        # the job reads (JobSpec.reads_only) still matches
        unread = {k for cls, only in job.reads_only.items()
                  for k in options.view_as(cls).get_all_options(current_only=True) if k not in only}
        previous = {**previous, "arguments": {k: v for k, v in previous.get("arguments", {}).items()
                                              if k not in NON_RESULT_OPTIONS and k not in unread}}
    if previous is not None and previous != current:
        before, now = previous.get("arguments", {}), current["arguments"]
        changed = [f"  {k}: {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
                   if before.get(k) != now.get(k)]
        if previous.get("job") != job.name:
            changed.insert(0, f"  job: {previous.get('job')!r} -> {job.name!r}")
        raise RunConflictError(
            f"{output} holds a run made with other arguments; its outputs and inference cache would be mixed "
            "with this run's. Use a new --output, or remove the directory to start over. Differences:\n"
            + "\n".join(changed))
    if previous is None:
        text = json.dumps(current, indent=2, sort_keys=True) + "\n"
        atomic_write(f"{output}/{RUN_FILE}", lambda f: f.write(text.encode("utf-8")))


def with_profile(argv: Sequence[str], job: JobSpec) -> list[str]:
    """``argv`` with the chosen ``--profile``'s flags in front (so explicit options win)."""
    argv = list(argv)
    if not job.profiles:
        return argv
    name = "default"
    for i, arg in enumerate(argv):
        if arg == "--profile" and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--profile="):
            name = arg.split("=", 1)[1]
    if name not in job.profiles:
        raise UnknownOptionError(f"{job.prog}: unknown profile {name!r}; profiles: {', '.join(sorted(job.profiles))}")
    return [*job.profiles[name], *argv]


def pipeline_options(argv: Sequence[str] | None, job: JobSpec) -> PipelineOptions:
    """Checked options (with the ``--profile``'s settings) and the DirectRunner as the default runner; the output
    directory is guarded."""
    argv = list(argv or [])
    check_known_options(argv, job)
    argv = with_profile(argv, job)
    options = PipelineOptions(argv)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        # The in-process Python runner: the default runner would first try (and fail) to download Prism.
        standard.runner = "DirectRunner"
    guard_output(options, job)
    return options


def counter_totals(result, prefix: str) -> dict[str, int]:
    """Committed Beam counters whose name starts with ``prefix`` (e.g. ``inference_cache.``), summed over steps;
    empty on a runner without metrics."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        counters = result.metrics().query(MetricsFilter())["counters"]
    except Exception:  # a runner without metrics support
        return {}
    totals: dict[str, int] = {}
    for c in counters:
        if c.key.metric.name.startswith(prefix) and c.committed is not None:
            name = c.key.metric.name[len(prefix):]
            totals[name] = totals.get(name, 0) + int(c.committed)
    return totals


def engine_seconds(result) -> float | None:
    """Time spent inside the engine: the sum of RunInference's per-batch inference latencies."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        distributions = result.metrics().query(MetricsFilter().with_name("inference_batch_latency_micro_secs"))
    except Exception:  # a runner without metrics support
        return None
    total = sum(d.committed.sum for d in distributions["distributions"] if d.committed is not None)
    return total / 1e6 if distributions["distributions"] else None


def configure_engine_log(output: str) -> str:
    """Send the engine's own messages (vLLM's start-up warnings and logs, in its subprocesses too) to a file
    instead of the console; returns the file. Local outputs keep it in ``<output>/logs/engine.log``."""
    from runners.engines.common import ENGINE_LOG_ENV

    if "://" in output:
        directory = tempfile.mkdtemp(prefix="inverse-instruct-logs-")
    else:
        directory = os.path.join(output, "logs")
        os.makedirs(directory, exist_ok=True)
    path = os.path.abspath(os.path.join(directory, "engine.log"))
    config = {
        "version": 1, "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"}},
        "handlers": {"file": {"class": "logging.FileHandler", "filename": path, "formatter": "plain", "level": "INFO"}},
        "loggers": {"vllm": {"handlers": ["file"], "level": "INFO", "propagate": False}},
    }
    config_path = os.path.join(directory, "engine-logging.json")
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = config_path  # read when vllm is imported (engine processes too)
    os.environ[ENGINE_LOG_ENV] = path
    vllm_logger = logging.getLogger("vllm")  # what vllm logs in this process before it configures itself
    vllm_logger.addHandler(logging.FileHandler(path))
    vllm_logger.propagate = False
    return path


def run_timed(options: PipelineOptions, build: Callable[[beam.Pipeline, PipelineOptions], Any],
              stage_order: Sequence[str] | None = None):
    """Build the job with ``build`` and run it to the end, with live progress on stderr unless ``--quiet``:
    (pipeline result, what ``build`` returned, wall seconds)."""
    from beam_pipelines.options import OutputOptions
    from transforms.io.options import SPILL_NONE, SpillOptions, resolve_spill_dir
    from transforms.io.spill import remove_spill_dir
    from transforms.stats.progress import LIVE, PROGRESS_DIR_ENV, ProgressReporter

    out = options.view_as(OutputOptions)
    started = time.monotonic()
    engine_log = configure_engine_log(out.output.rstrip("/"))
    if not out.quiet:
        print(f"inverse-instruct: engine messages go to {engine_log}", file=sys.stderr, flush=True)
    reporter = None
    directory = None
    LIVE.reset()
    spill = options.view_as(SpillOptions)
    spill_choice, spill_root = spill.spill_dir, resolve_spill_dir(options)  # one fresh directory for the job
    spill.spill_dir = spill_root or SPILL_NONE
    if not out.quiet:
        directory = tempfile.mkdtemp(prefix="inverse-instruct-progress-")
        os.environ[PROGRESS_DIR_ENV] = directory  # inherited by the runner's worker processes
        console = os.fdopen(os.dup(2), "w", buffering=1)  # stays the console while an engine starts (see engines)
        reporter = ProgressReporter(directory, interval=out.progress_interval, order=list(stage_order or ()),
                                    stream=console).start()
    try:
        pipeline = beam.Pipeline(options=options)
        built = build(pipeline, options)
        result = pipeline.run()
        result.wait_until_finish()
        LIVE.flush()
    finally:
        spill.spill_dir = spill_choice
        if spill_root:
            remove_spill_dir(spill_root)
        if reporter is not None:
            reporter.stop()
            reporter.stream.close()
            os.environ.pop(PROGRESS_DIR_ENV, None)
            shutil.rmtree(directory, ignore_errors=True)
    return result, built, time.monotonic() - started


def write_summary(output: str, summary: dict[str, Any], result=None, hidden: Sequence[str] = ()) -> dict[str, Any]:
    """Add the time spent inside the engine and the inference cache's hits (when ``result`` ran an engine), write
    ``summary.json``, print it."""
    inside = engine_seconds(result) if result is not None else None
    if inside is not None:
        summary["engine_seconds"] = round(inside, 2)
    cache = counter_totals(result, "inference_cache.") if result is not None else {}
    if cache:
        summary["inference_cache"] = {"hits": cache.get("hits", 0), "misses": cache.get("misses", 0),
                                        "seconds": round(cache.get("overhead_us", 0) / 1e6, 3)}
    from transforms.io.parquet import write_index_atomic

    write_index_atomic(f"{output}/summary.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k not in hidden}, indent=2))
    return summary


def print_help(job: JobSpec) -> None:
    """The job's options, then Beam's own."""
    _parser(job).print_help()


def job_main(argv: Sequence[str] | None, job: JobSpec, run: Callable[[Sequence[str]], dict[str, Any]]) -> int:
    """``--help``, option check, logging, then ``run``; the exit code says whether the job's counts balance."""
    argv = list(argv if argv is not None else sys.argv[1:])
    if "--help" in argv or "-h" in argv:
        print_help(job)
        return 0
    try:
        check_known_options(argv, job)
    except UnknownOptionError as err:
        print(err, file=sys.stderr)
        return 2
    logging.getLogger().setLevel(logging.INFO if "--verbose" in argv else logging.WARNING)
    try:
        result = run(argv)
    except RunConflictError as err:
        print(f"{job.prog}: {err}", file=sys.stderr)
        return 2
    return 0 if result["balanced"] else 1
