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
import sys
import time
from typing import Any, Callable, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """A job: its subcommand name, its description (the module docstring) and the option classes it reads."""

    name: str
    description: str | None
    option_classes: tuple[type[PipelineOptions], ...]

    @property
    def prog(self) -> str:
        return f"inverse-instruct {self.name}"


class UnknownOptionError(ValueError):
    """An option the job does not know; raised before the pipeline is built."""


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
        cls._add_argparse_args(parser)
    if with_beam:
        beam_group = parser.add_argument_group("Apache Beam (runner, workers, cloud); see Beam's documentation")
        for cls in beam_option_classes():
            cls._add_argparse_args(_GroupAdapter(parser, beam_group))
    return parser


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


def pipeline_options(argv: Sequence[str] | None, job: JobSpec) -> PipelineOptions:
    """Checked options with the DirectRunner as the default runner."""
    argv = list(argv or [])
    check_known_options(argv, job)
    options = PipelineOptions(argv)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        # The in-process Python runner: the default runner would first try (and fail) to download Prism.
        standard.runner = "DirectRunner"
    return options


def engine_seconds(result) -> float | None:
    """Time spent inside the engine: the sum of RunInference's per-batch inference latencies."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        distributions = result.metrics().query(MetricsFilter().with_name("inference_batch_latency_micro_secs"))
    except Exception:  # a runner without metrics support
        return None
    total = sum(d.committed.sum for d in distributions["distributions"] if d.committed is not None)
    return total / 1e6 if distributions["distributions"] else None


def run_timed(options: PipelineOptions, build: Callable[[beam.Pipeline, PipelineOptions], Any]):
    """Build the job with ``build``, run it to the end: (pipeline result, what ``build`` returned, wall seconds)."""
    started = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    built = build(pipeline, options)
    result = pipeline.run()
    result.wait_until_finish()
    return result, built, time.monotonic() - started


def write_summary(output: str, summary: dict[str, Any], result=None, hidden: Sequence[str] = ()) -> dict[str, Any]:
    """Add the time spent inside the engine (when ``result`` ran one), write ``summary.json``, print it."""
    inside = engine_seconds(result) if result is not None else None
    if inside is not None:
        summary["engine_seconds"] = round(inside, 2)
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
    logging.basicConfig(level=logging.INFO if "--verbose" in argv else logging.WARNING)
    return 0 if run(argv)["balanced"] else 1
