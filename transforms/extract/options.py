"""``ExtractionOptions`` (``--extraction-policy`` and length bounds) and the ``ExtractionConfig`` they make."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.extract.policies import POLICIES, ExtractionConfig


class ExtractionOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("extraction")
        group.add_argument(
            "--extraction-policy", dest="extraction_policy", default="multilang", choices=POLICIES[::-1],
            help="paper: first fenced block as is, unfenced kept only if Python ast parses (the reference). "
            "multilang: normalized fence tags, tree-sitter language detection and syntax check.",
        )
        group.add_argument("--min-lines", dest="min_lines", type=int, default=None)
        group.add_argument("--max-lines", dest="max_lines", type=int, default=None)
        group.add_argument("--min-chars", dest="min_chars", type=int, default=None)
        group.add_argument("--max-chars", dest="max_chars", type=int, default=None)


def extraction_config(options: PipelineOptions) -> ExtractionConfig:
    ext = options.view_as(ExtractionOptions)
    bounds = {
        name: getattr(ext, name)
        for name in ("min_lines", "max_lines", "min_chars", "max_chars")
        if getattr(ext, name) is not None
    }
    if ext.extraction_policy == "paper":
        return ExtractionConfig.paper(**bounds)
    return ExtractionConfig.multilang(**bounds)
