"""The puzzle-generation prompt.

``paper`` (the default; gen.py ``gen_from_puzzles``): puzzles only, no solutions - one ``f`` per P3 training
family (the family's first instance), docstrings removed, shuffled with a seeded RNG, renamed ``f1 .. fk`` by
``str.replace(" f(", " f{i}(")``, joined with ``"\\n\\n"`` and ending with ``def f{k+1}(``. Examples are added
while the prompt stays under ``max_tokens - gen_tokens`` tokens (2048 - 200). The model's completion is cut at
the end of the function (``strip_puzzle``) after ``def f(`` is put back in front of it.

``seed``: the project's earlier format (``transforms/presets/self_play.yaml``): numbered f/g pairs from
``seed_puzzles.yaml`` (and optionally the P3 training families), the model writes a puzzle and its solution.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Callable, Sequence

from schemas.records import content_id
from transforms.selfplay import puzzles as seed_format
from transforms.selfplay.p3 import P3Instance, require_train
from transforms.selfplay.preset import GenerationStrings, load_preset
from transforms.selfplay.source import remove_docstring, strip_puzzle

CountTokens = Callable[[str], int]


@dataclasses.dataclass(frozen=True)
class SamplingDefaults:
    """The reference's sampling settings for generation (gen.py ``gen``)."""

    temperature: float
    samples_per_prompt: int
    max_new_tokens: int
    n_puzzles: int
    stop: tuple[str, ...]
    seed: int = 0


def sampling_defaults(strings: GenerationStrings | None = None, seed: int = 0) -> SamplingDefaults:
    s = strings or load_preset().generation
    return SamplingDefaults(s.temperature, s.samples_per_prompt, s.gen_tokens, s.n_puzzles, s.stop, seed)


@dataclasses.dataclass(frozen=True)
class GenerationPrompt:
    text: str
    k: int  # puzzles shown; the prompt ends with def f{k+1}(
    examples: tuple[str, ...]  # P3 instance names, in prompt order
    tokens: int  # count_tokens(text)
    prompt_index: int
    seed: int
    preset: str = "paper"

    @property
    def key(self) -> str:
        return content_id("selfplay_generation_prompt", self.text)


def generation_pool(instances: Sequence[P3Instance]) -> list[P3Instance]:
    """The puzzles a paper-style prompt draws from: one per training family (the first given), docstrings
    removed. Refuses test-family instances."""
    first: dict[str, P3Instance] = {}
    for p in require_train(instances):
        first.setdefault(p.family, p)
    pool = [dataclasses.replace(p, f=remove_docstring(p.f)) for p in first.values()]
    texts = [p.f for p in pool]
    if len(set(texts)) != len(texts):
        raise ValueError("two training families have the same puzzle text")
    return pool


def _shuffled(pool: Sequence[P3Instance], seed: int, prompt_index: int) -> list[P3Instance]:
    order = list(pool)
    random.Random(content_id("selfplay_generation_order", seed, prompt_index)).shuffle(order)
    return order


def _render(puzzles: Sequence[str], strings: GenerationStrings) -> str:
    entries = [*puzzles, strings.next]
    return strings.separator.join(
        entry.replace(strings.rename_from, strings.rename_to.format(i=i)) for i, entry in enumerate(entries, 1))


def build_generation_prompt(pool: Sequence[P3Instance], count_tokens: CountTokens, *, prompt_index: int,
                            seed: int = 0, max_tokens: int | None = None, gen_tokens: int | None = None,
                            strings: GenerationStrings | None = None) -> GenerationPrompt:
    """The ``prompt_index``-th generation prompt of a run: the pool shuffled by (seed, prompt_index), packed
    while ``count_tokens(prompt) < max_tokens - gen_tokens`` (the reference stops at the first puzzle that would
    cross the budget)."""
    s = strings or load_preset().generation
    budget = (max_tokens if max_tokens is not None else s.max_tokens) - (
        gen_tokens if gen_tokens is not None else s.gen_tokens)
    order = _shuffled(require_train(pool), seed, prompt_index)
    best: tuple[str, int, int] | None = None
    for k in range(len(order) + 1):
        text = _render([p.f for p in order[:k]], s)
        tokens = count_tokens(text)
        if tokens >= budget:
            break
        best = (text, k, tokens)
    if best is None:
        raise ValueError(f"even an empty prompt has {tokens} tokens, over the budget of {budget}")
    text, k, tokens = best
    return GenerationPrompt(text, k, tuple(p.name for p in order[:k]), tokens, prompt_index, seed)


def prompt_header(prompt: GenerationPrompt, strings: GenerationStrings | None = None) -> str:
    """What the prompt ends with: ``def f{k+1}(``."""
    s = strings or load_preset().generation
    return s.next.replace(s.rename_from, s.rename_to.format(i=prompt.k + 1))


def puzzle_from_completion(completion: str, strings: GenerationStrings | None = None) -> str:
    """The generated puzzle: ``def f(`` + the completion, cut at the end of the function. References to the
    numbered name inside the body stay as generated, as in the reference."""
    s = strings or load_preset().generation
    return strip_puzzle(s.completion_head + completion)


# ---------------------------------------------------------------------------------------- the project's format

def build_seed_prompt(pool: Sequence[seed_format.Puzzle], *, shots: int, prompt_index: int, seed: int = 0,
                      template: seed_format.SelfPlayPrompt | None = None) -> GenerationPrompt:
    """The project's earlier f/g few-shot prompt (``presets/self_play.yaml``), wrapped like a paper prompt."""
    if any(p.origin == "p3-test" for p in pool):
        raise ValueError("P3 test puzzles are for evaluation only, never prompts")
    template = template or seed_format.load_self_play_prompt()
    examples = seed_format.choose_examples(pool, shots, prompt_index, seed)
    text = seed_format.few_shot_prompt(examples, template)
    return GenerationPrompt(text, len(examples), tuple(p.name for p in examples), -1, prompt_index, seed, "seed")
