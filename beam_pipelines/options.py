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
        group.add_argument("--output", required=False, default="runs/latest",
                           help="Output directory (any fsspec path).")
        group.add_argument("--verbose", action="store_true", default=False, help="Log at INFO level.")
        group.add_argument("--quiet", action="store_true", default=False,
                           help="No live progress lines on stderr (the summary is still printed).")
        from transforms.stats.progress import interval_argument

        group.add_argument("--progress-interval", dest="progress_interval", type=interval_argument, default=None,
                           help="Seconds between progress reports (default: 2 on a terminal, 10 otherwise).")


# What ``--profile paper`` sets: every choice as the InverseCoder paper and its reference code made it. The flags go
# in front of the command line, so an option given explicitly still wins; the manifest records them.
PROFILES: dict[str, tuple[str, ...]] = {
    "default": (),
    "paper": (
        "--extraction-policy=paper",  # first ``` block, or the whole response if Python's ast parses it
        "--prompt-code=reference",  # the reference's raw slice of the response as {code}
        "--no-postfilters",  # the reference keeps every candidate
        "--no-dedup",  # no snippet dedup
        "--no-neardedup",  # no near-dedup
        "--scoring-mode=reference",  # top-5 log-probs, -100 when missing, "As" for "No"
        "--decontam-methods=substring",  # Magicoder's exact substring match ...
        "--substring-variant=magicoder",  # ... of its strings per benchmark, with its trivial-solution list
        "--decontam-source",  # the corpus as Magicoder decontaminated it, then the generated pairs again
        "--emit-original=all",  # stage 2 trains on the whole original corpus
    ),
}


class MainJobOptions(PipelineOptions):
    """The main job's profile, choice of stages and output bounds."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("main job")
        group.add_argument(
            "--profile", choices=sorted(PROFILES), default="default",
            help="paper: every setting as the InverseCoder paper ran it (see the README's table; options given "
            "explicitly still win); default: the project's own choices.",
        )
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
