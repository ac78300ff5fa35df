"""Options of the method stages (summarize, self-evaluate, select) and the plain configs built from them.

Defaults are the reference recipe (../shared/reference/inverse_instruct.md): k=10, temperature 0.8, top_p 1.0,
repetition_penalty 1.1, max_tokens 2048, top-1 selection with no threshold. The stages take the plain dataclasses
below (picklable, testable without Beam); :func:`method_config` builds them from parsed options.
"""
from __future__ import annotations

import dataclasses

from apache_beam.options.pipeline_options import PipelineOptions

SCORING_MODES = ("exact", "reference")
PROMPT_CODES = ("cleaned", "reference")

TOP_K_WARNING = (
    "The paper keeps only the top-1 candidate per snippet: in its ablation (CL-7B, HumanEval (+)) top-1 gave "
    "76.2 (72.0) while top-3 and top-5 gave 70.1 (67.1) and 70.1 (65.2), i.e. keeping more candidates made the "
    "fine-tuned model worse."
)


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """Summarize sampling; one request (n=1) per candidate, each with its own seed."""

    num_candidates: int = 10
    temperature: float = 0.8
    top_p: float = 1.0
    repetition_penalty: float = 1.1
    max_new_tokens: int = 2048
    run_seed: int = 0

    def __post_init__(self) -> None:
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates (--num-candidates) must be >= 1, got {self.num_candidates}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not self.repetition_penalty > 0:  # vLLM and HF both refuse it, but only once the engine has started
            raise ValueError(f"repetition_penalty (--repetition-penalty) must be > 0, got {self.repetition_penalty}")


@dataclasses.dataclass(frozen=True)
class FilterConfig:
    """Post-filters on generated instructions (characters of the stored instruction; 0 disables a bound)."""

    min_instruction_chars: int = 20
    max_instruction_chars: int = 4096
    # A candidate echoes the code when it contains the whole code, or at least this share of the code's
    # substantial lines (and at least `code_echo_min_lines` of them).
    code_echo_line_fraction: float = 0.5
    code_echo_min_lines: int = 3
    enabled: bool = True  # False: no post-filter at all, duplicates included (the reference has none)


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    """Top-k per snippet (default 1, as the paper; see TOP_K_WARNING) and an optional score threshold."""

    top_k: int = 1
    min_score: float | None = None

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    preset: str = "paper"
    sampling: SamplingConfig = SamplingConfig()
    filters: FilterConfig = FilterConfig()
    scoring_mode: str = "exact"
    selection: SelectionConfig = SelectionConfig()
    prompt_code: str = "cleaned"  # the {code} of the prompts: the cleaned snippet re-fenced, or the reference's slice

    def __post_init__(self) -> None:
        if self.scoring_mode not in SCORING_MODES:
            raise ValueError(f"scoring_mode must be one of {SCORING_MODES}, got {self.scoring_mode!r}")
        if self.prompt_code not in PROMPT_CODES:
            raise ValueError(f"prompt_code must be one of {PROMPT_CODES}, got {self.prompt_code!r}")

    def to_json_dict(self) -> dict:
        """For manifests."""
        return dataclasses.asdict(self)


class MethodOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("Inverse-Instruct method")
        group.add_argument(
            "--preset",
            dest="preset",
            default="paper",
            help="Prompt preset: 'paper' (the reference prompts byte for byte), 'chat' (the same requests in the "
            "model's chat template) or a path to a YAML/JSON preset file.",
        )
        group.add_argument("--num-candidates", dest="num_candidates", type=int, default=SamplingConfig.num_candidates,
                           help="k: candidate instructions generated per snippet (paper: 10).")
        group.add_argument("--temperature", dest="temperature", type=float, default=SamplingConfig.temperature)
        group.add_argument("--top-p", dest="top_p", type=float, default=SamplingConfig.top_p)
        group.add_argument("--repetition-penalty", dest="repetition_penalty", type=float,
                           default=SamplingConfig.repetition_penalty)
        group.add_argument("--max-new-tokens", dest="max_new_tokens", type=int, default=SamplingConfig.max_new_tokens,
                           help="Token budget of one generated instruction (paper: 2048).")
        group.add_argument("--run-seed", dest="run_seed", type=int, default=SamplingConfig.run_seed,
                           help="Seed of the run; each candidate's seed derives from (snippet id, index, run seed).")
        group.add_argument("--scoring-mode", dest="scoring_mode", choices=SCORING_MODES, default="exact",
                           help="exact: p(Yes)/(p(Yes)+p(No)) from exact next-token log-probs (default). reference: "
                           "replay the reference code (top-5 log-probs, -100 when missing, 'As' standing in for 'No').")
        group.add_argument("--min-score", dest="min_score", type=float, default=None,
                           help="Drop winners scoring below this (default: no threshold, as the paper).")
        group.add_argument("--top-k", dest="top_k", type=int, default=1,
                           help="Candidates kept per snippet (default 1). " + TOP_K_WARNING)
        group.add_argument("--min-instruction-chars", dest="min_instruction_chars", type=int,
                           default=FilterConfig.min_instruction_chars, help="0 disables the bound.")
        group.add_argument("--max-instruction-chars", dest="max_instruction_chars", type=int,
                           default=FilterConfig.max_instruction_chars, help="0 disables the bound.")
        group.add_argument("--postfilters", dest="postfilters", action="store_true", default=True,
                           help="Reject empty, refusal, code-echo, too short/long and duplicate candidates (default).")
        group.add_argument("--no-postfilters", dest="postfilters", action="store_false",
                           help="Keep every candidate the engine returns (the reference has no post-filter).")
        group.add_argument("--prompt-code", dest="prompt_code", choices=PROMPT_CODES, default="cleaned",
                           help="The {code} of the summarize and judge prompts: the cleaned snippet re-fenced with its "
                                "tag (cleaned), or the reference's raw slice of the response (reference; needs "
                                "--extraction-policy paper).")


def method_config(options: PipelineOptions) -> MethodConfig:
    """The plain config of the method stages from parsed pipeline options."""
    opts = options.view_as(MethodOptions)
    return MethodConfig(
        preset=opts.preset,
        sampling=SamplingConfig(
            num_candidates=opts.num_candidates,
            temperature=opts.temperature,
            top_p=opts.top_p,
            repetition_penalty=opts.repetition_penalty,
            max_new_tokens=opts.max_new_tokens,
            run_seed=opts.run_seed,
        ),
        filters=FilterConfig(
            min_instruction_chars=opts.min_instruction_chars,
            max_instruction_chars=opts.max_instruction_chars,
            enabled=opts.postfilters,
        ),
        scoring_mode=opts.scoring_mode,
        selection=SelectionConfig(top_k=opts.top_k, min_score=opts.min_score),
        prompt_code=opts.prompt_code,
    )


def manifest_section(config: MethodConfig) -> dict:
    """The method's configuration as the manifest records it: every knob plus the prompt preset's identity."""
    from transforms.instruct.prompts import load_preset

    preset = load_preset(config.preset)
    return {
        **config.to_json_dict(),
        "preset": {"spec": config.preset, "name": preset.name, "hash": preset.hash, "style": preset.style},
        "top_k_warning": TOP_K_WARNING if config.selection.top_k > 1 else None,
    }
