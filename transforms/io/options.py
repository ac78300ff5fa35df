"""Options of the io package: the corpus (``CorpusOptions``), the training shards (``ShardOptions``) and where
shuffled records spill (``SpillOptions``)."""
from __future__ import annotations

import argparse
import logging
import math
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.io.training_examples import DEFAULT_SHARD_MB, EMIT_ORIGINAL_MODES, ORIGINAL_RESPONSE_MODES


class CorpusOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("corpus")
        group.add_argument(
            "--input",
            default=None,
            help="Corpus path or glob (comma-separated for several): Parquet, JSON or JSONL on any path Beam's "
            "filesystems or fsspec understand. Without --input the corpus is a source tree (--source-tree).",
        )
        group.add_argument(
            "--input-format", dest="input_format", default="auto", choices=("auto", "parquet", "json", "jsonl"),
            help="Format of --input files; auto picks it from each file name.",
        )
        group.add_argument(
            "--source-tree", dest="source_tree", default=None,
            help="A directory of source files read one snippet per top-level function, class or method. "
            "Default (when --input is not given): the running interpreter's standard library.",
        )
        group.add_argument("--instruction-column", dest="instruction_column", default="instruction",
                           help="The column (JSON field) holding each record's instruction.")
        group.add_argument("--response-column", dest="response_column", default="response",
                           help="The column (JSON field) holding each record's response, where the code is.")
        group.add_argument(
            "--input-column", dest="input_column", default=None,
            help="Optional extra-context column appended to the instruction (Code Alpaca: input).",
        )
        group.add_argument(
            "--limit", type=positive_count, default=None,
            help="Process only N source records (N >= 1), chosen deterministically (smallest content id). "
            "Without it: the whole corpus.",
        )


def positive_count(text: str) -> int:
    """argparse type of ``--limit``: a whole number of at least 1 (0 must not mean "no limit", nor -3 "nothing")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of records, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (leave the option out to read the whole corpus), "
                                         f"got {value}")
    return value


def corpus_mapping(options: PipelineOptions):
    """The ``ColumnMapping`` of ``--input``'s columns (an empty name is refused: it would name no column)."""
    from transforms.io.readers import ColumnMapping

    corpus = options.view_as(CorpusOptions)
    return ColumnMapping(instruction=corpus.instruction_column, response=corpus.response_column,
                         input=corpus.input_column)


def check_corpus_options(options: PipelineOptions) -> None:
    """Before any work: the corpus can be read as configured (``--input`` matches a file whose first one has the
    columns, or the source tree holds source files), else ``CorpusConfigError`` naming the path and column."""
    from transforms.io.beam import corpus_files, source_tree_files
    from transforms.io.readers import default_source_root

    corpus = options.view_as(CorpusOptions)
    if corpus.input:
        corpus_files(corpus.input, corpus_mapping(options), corpus.input_format)
    else:
        source_tree_files(corpus.source_tree or default_source_root())


class ShardOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--shard-records", dest="shard_records", type=int, default=None,
                            help="Rows per training shard (exclusive with --shard-mb).")
        parser.add_argument("--shard-mb", dest="shard_mb", type=float, default=None,
                            help=f"Payload MiB per training shard (default {DEFAULT_SHARD_MB:g} when neither is set).")
        parser.add_argument("--emit-original", dest="emit_original", nargs="?", const="kept", default="none",
                            choices=EMIT_ORIGINAL_MODES,
                            help="Also write original pairs as training shards (<output>/training/original): kept "
                                 "(the bare flag) = the pairs whose snippet survived extraction and dedup; all = every "
                                 "pair of the corpus, as the paper's stage 2 trains on (no dedup); none (default).")
        parser.add_argument("--original-response", dest="original_response", choices=ORIGINAL_RESPONSE_MODES,
                            default="source",
                            help="Response of an original example: the corpus's full response (source) or the "
                                 "cleaned snippet, fenced (code).")
        parser.add_argument("--shard-seed", dest="shard_seed", type=int, default=None,
                            help="Seed of the shard shuffle (default: the run seed).")


def shard_bounds(options: ShardOptions) -> dict[str, Any]:
    """``{"shard_records": ..., "shard_mb": ...}`` with exactly one set; a count below 1 or a size that is not a
    positive finite number is refused (the job's check calls this before run.json)."""
    if options.shard_records is not None and options.shard_mb is not None:
        raise ValueError("--shard-records and --shard-mb are exclusive")
    if options.shard_records is not None and options.shard_records < 1:
        raise ValueError(f"--shard-records must be at least 1, got {options.shard_records}")
    if options.shard_mb is not None and not 0 < options.shard_mb < math.inf:
        raise ValueError(f"--shard-mb must be a positive number of MiB, got {options.shard_mb:g}")
    if options.shard_records is None and options.shard_mb is None:
        return {"shard_records": None, "shard_mb": DEFAULT_SHARD_MB}
    return {"shard_records": options.shard_records, "shard_mb": options.shard_mb}


SPILL_AUTO, SPILL_NONE = "auto", "none"
# Runners whose workers share this machine's file system: local spill files serve them.
_LOCAL_RUNNERS = frozenset({"DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner"})


class SpillOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--spill-dir", dest="spill_dir", default=SPILL_AUTO,
            help="Where stages that group whole records (exact dedup, the Parquet writers) park them while only a "
                 "28-byte handle crosses the shuffle (transforms/io/spill.py), so memory stays flat as the corpus "
                 "grows. auto (default): a fresh directory under the system temp dir on local runners (the "
                 "DirectRunner, or any runner with --environment_type=LOOPBACK), removed when the job ends (a "
                 "killed job's, when the next job starts); give a disk path if the temp dir is a tmpfs, which is "
                 "memory. Distributed runners shuffle on disk already and do not spill. none: never spill. A path "
                 "(any file system every worker can read): spill under it.")


def resolve_spill_dir(options: PipelineOptions) -> str | None:
    """The parent directory to spill under for this job (a fresh one for ``auto``), or None for no spilling."""
    import tempfile

    from apache_beam.options.pipeline_options import PortableOptions, StandardOptions

    from transforms.io.spill import new_job_spill_dir, remove_orphaned_spill_dirs

    choice = options.view_as(SpillOptions).spill_dir
    if choice == SPILL_NONE:
        return None
    if choice == SPILL_AUTO:
        runner = options.view_as(StandardOptions).runner
        name = runner if isinstance(runner, str) or runner is None else type(runner).__name__
        local = (name or "DirectRunner") in _LOCAL_RUNNERS or (
            (options.view_as(PortableOptions).environment_type or "").upper() == "LOOPBACK")
        if not local:
            return None
        choice = tempfile.gettempdir()
    orphans = remove_orphaned_spill_dirs(choice)
    if orphans:
        logging.getLogger(__name__).warning("removed %d spill director%s of killed jobs under %s", len(orphans),
                                            "y" if len(orphans) == 1 else "ies", choice)
    return new_job_spill_dir(choice)


def spill_dir(options: PipelineOptions) -> str | None:
    """The job's spill directory as the launcher resolved it (``run_timed``); None when it did not, or for none."""
    choice = options.view_as(SpillOptions).spill_dir
    return None if choice in (SPILL_AUTO, SPILL_NONE) else choice
