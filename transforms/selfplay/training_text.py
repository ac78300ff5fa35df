"""The paper's training text (preprocess.py): raw Python, trained on with the loss on every token.

Per solved puzzle, its distinct verified solution bodies, shortest first, at most ``max_sols_per_puzzle`` (8);
each becomes ``f + "\\n\\n" + g + "\\n\\n" + "assert f(g())\\n\\n"`` with ``g = f"def g({inputs}):{body}"``
stripped of surrounding backslashes and whitespace (``inputs``: f's parameters after the answer). The examples
of all puzzles are deduplicated (exact text, first kept), shuffled, cut to a cap and concatenated into one text.

The cap: the stored preprocess.py hard-codes 950,511 ("the same number of examples as we got from codex"); the
README's commands that built the paper's data sets pass 25,000 for iteration 0 and 1,000,000 for iterations 1
and 2 (``example_cap``). The stored code accepts a ``seed`` but never seeds its shuffle; here it is seeded.

Which data an iteration trains on: babysit.sh runs with ``TRAIN_INCREMENTAL=0``, so the model of iteration r
is the BASE model fine-tuned on the examples of iterations 0..r together (preprocess reads ``iter_*/``), while
iteration r+1 generates and solves with that model. The self-play loop's merge (``merge``) builds that set.
"""
from __future__ import annotations

import random
from typing import Iterable, Sequence

from schemas.records import content_id
from transforms.selfplay.preset import TrainingStrings, load_preset
from transforms.selfplay.source import WeirdSignature, puzzle_inputs


def _strings(strings: TrainingStrings | None) -> TrainingStrings:
    return strings or load_preset().training


def example_cap(iteration: int, strings: TrainingStrings | None = None) -> int:
    s = _strings(strings)
    if iteration < 0:
        raise ValueError("iterations count from 0")
    return s.cap_first_iteration if iteration == 0 else s.cap_later_iterations


def training_example(f: str, body: str, strings: TrainingStrings | None = None, header: str | None = None) -> str:
    """One example; ``WeirdSignature`` when f's inputs cannot be read (the reference skips the solution).
    ``header``: the solution header's template (placeholder ``{inputs}``), default the preset's ``solve.header``,
    the same one the solve prompt ends with."""
    template = load_preset().solve.header if header is None else header
    g = (template.format(inputs=puzzle_inputs(f)) + body).strip("\\").strip()
    return _strings(strings).example.format(f=f, g=g)


def puzzle_examples(f: str, bodies: Sequence[str], max_sols_per_puzzle: int | None = None,
                    strings: TrainingStrings | None = None, header: str | None = None) -> list[str]:
    """The examples of one puzzle from its verified bodies (any order; duplicates allowed); at most
    ``max_sols_per_puzzle`` (default: the preset's ``solve.max_sols_per_puzzle``)."""
    limit = load_preset().solve.max_sols_per_puzzle if max_sols_per_puzzle is None else max_sols_per_puzzle
    chosen = sorted(dict.fromkeys(bodies), key=len)[:limit]
    return [training_example(f, body, strings, header) for body in chosen]


def build_examples(solved: Iterable[tuple[str, Sequence[str]]], max_sols_per_puzzle: int | None = None,
                   strings: TrainingStrings | None = None, header: str | None = None) -> tuple[list[str], int]:
    """(deduplicated examples of every ``(f, verified bodies)``, number of solutions skipped for a weird
    signature)."""
    limit = load_preset().solve.max_sols_per_puzzle if max_sols_per_puzzle is None else max_sols_per_puzzle
    examples: list[str] = []
    skipped = 0
    for f, bodies in solved:
        try:
            examples += puzzle_examples(f, bodies, limit, strings, header)
        except WeirdSignature:
            skipped += min(len(set(bodies)), limit)
    return list(dict.fromkeys(examples)), skipped


def cap_examples(examples: Sequence[str], cap: int, seed: int) -> list[str]:
    """The examples shuffled by ``seed`` and cut to ``cap``."""
    order = list(examples)
    random.Random(content_id("selfplay_training_shuffle", seed)).shuffle(order)
    return order[:cap]


def training_text(examples: Iterable[str]) -> str:
    return "".join(examples)
