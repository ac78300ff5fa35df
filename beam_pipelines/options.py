"""Job-level options: the output directory (every job), and the main job's stages and output bounds.

Each stage package owns its own ``PipelineOptions`` subclass in its ``options.py`` (corpus and shards:
``transforms.io.options``, extraction: ``transforms.extract.options``, method: ``transforms.instruct.options``,
decontamination: ``transforms.decontam.options``, near-dedup: ``transforms.dedup.options``, engine:
``runners.options``). A job lists the classes it reads (``beam_pipelines.launch.JobSpec``); ``--help`` shows
them, and any other option is an error.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

STAGE_CHOICES = ("extract", "generate", "all")


class OutputOptions(PipelineOptions):
    """What every job takes: where its outputs go."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("output")
        group.add_argument("--output", required=False, default="runs/latest", help="Output directory (any fsspec path).")
        group.add_argument("--verbose", action="store_true", default=False, help="Log at INFO level.")
        group.add_argument("--quiet", action="store_true", default=False,
                           help="No live progress lines on stderr (the summary is still printed).")
        group.add_argument("--progress-interval", dest="progress_interval", type=float, default=None,
                           help="Seconds between progress reports (default: 2 on a terminal, 10 otherwise).")


class MainJobOptions(PipelineOptions):
    """The main job's choice of stages and output bounds."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("main job")
        group.add_argument(
            "--stages", default="all", choices=STAGE_CHOICES,
            help="extract: read, extract and dedup only, writing snippets; generate: also summarize, score and "
            "select; all: the whole job (with decontamination and training shards).",
        )
        group.add_argument(
            "--decontam-source", dest="decontam_source", action="store_true", default=False,
            help="Also decontaminate the extracted snippets (original instruction and code) before generation; "
            "the generated pairs are always decontaminated under --stages all.",
        )
        group.add_argument(
            "--output-records-per-file", dest="output_records_per_file", type=int, default=100_000,
            help="Row bound of each Parquet file of snippets, selected pairs and rejected records.",
        )
