"""What every job's launcher shares: options with the runner default, timed runs, engine time, --help, main."""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, Callable, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions


def pipeline_options(argv: Sequence[str] | None) -> PipelineOptions:
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


def print_help(prog: str, description: str | None) -> None:
    """Every option of every stage and of Beam itself: Beam gathers all PipelineOptions subclasses."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    seen = set()

    def add(cls):
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                try:
                    sub._add_argparse_args(parser)
                except argparse.ArgumentError:
                    pass  # a flag two option classes share is listed once
                add(sub)

    add(PipelineOptions)
    parser.print_help()


def job_main(argv: Sequence[str] | None, prog: str, description: str | None,
             run: Callable[[Sequence[str]], dict[str, Any]]) -> int:
    """``--help``, logging, then ``run``; the exit code says whether the job's record counts balance."""
    argv = list(argv if argv is not None else sys.argv[1:])
    if "--help" in argv or "-h" in argv:
        print_help(prog, description)
        return 0
    logging.basicConfig(level=logging.INFO if "--verbose" in argv else logging.WARNING)
    return 0 if run(argv)["balanced"] else 1
