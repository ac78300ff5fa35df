"""``DedupOptions``: exact snippet dedup on or off, and MinHash-LSH near-dedup with the config it makes."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.dedup.minhash import NearDedupConfig


class DedupOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        g = parser.add_argument_group("exact dedup")
        g.add_argument("--dedup", dest="dedup", action="store_true", default=True,
                       help="Keep one copy of snippets with the same normalized code (default).")
        g.add_argument("--no-dedup", dest="dedup", action="store_false",
                       help="Keep every extracted snippet (the reference does not deduplicate).")
        g = parser.add_argument_group("near-duplicate removal")
        g.add_argument("--neardedup", dest="neardedup", action="store_true", default=True)
        g.add_argument("--no-neardedup", dest="neardedup", action="store_false")
        g.add_argument("--minhash-ngram", dest="minhash_ngram", type=int, default=5, help="words per shingle")
        g.add_argument("--minhash-num-perm", dest="minhash_num_perm", type=int, default=256)
        g.add_argument("--minhash-threshold", dest="minhash_threshold", type=float, default=0.7,
                       help="Jaccard similarity at which two records are near-duplicates")
        g.add_argument("--minhash-bands", dest="minhash_bands", type=int, default=None,
                       help="LSH bands (with --minhash-rows); default: datasketch's optimum for the threshold")
        g.add_argument("--minhash-rows", dest="minhash_rows", type=int, default=None)
        g.add_argument("--minhash-seed", dest="minhash_seed", type=int, default=42)


def neardedup_config(options: PipelineOptions, columns: tuple[str, ...] = ("instruction", "response")
                     ) -> NearDedupConfig | None:
    """None when --no-neardedup."""
    o = options.view_as(DedupOptions)
    if not o.neardedup:
        return None
    return NearDedupConfig(
        columns=tuple(columns), ngram=o.minhash_ngram, num_perm=o.minhash_num_perm,
        threshold=o.minhash_threshold, bands=o.minhash_bands, rows=o.minhash_rows, seed=o.minhash_seed,
    )


