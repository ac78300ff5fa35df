"""``SelfPlayOptions``: the self-play job's options (examples, prompts, samples, sampling, verification)."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


class SelfPlayOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("self-play puzzles")
        group.add_argument("--p3-dir", dest="p3_dir", default=None,
                           help="Folder with P3's puzzles.json and split.json: its training families join the "
                                "seed puzzles as few-shot examples (the test families are never used).")
        group.add_argument("--num-prompts", dest="num_prompts", type=int, default=8)
        group.add_argument("--shots", type=int, default=4, help="Few-shot examples per prompt.")
        group.add_argument("--samples-per-prompt", dest="samples_per_prompt", type=int, default=4)
        group.add_argument("--puzzle-temperature", dest="puzzle_temperature", type=float, default=0.8)
        group.add_argument("--puzzle-max-tokens", dest="puzzle_max_tokens", type=int, default=256)
