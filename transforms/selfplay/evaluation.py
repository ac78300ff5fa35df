"""Scoring the test evaluation (228 P3 test puzzles, 100 attempts each at T=0.8).

``pass_at_k_curve``: the unbiased pass@k (Chen et al. 2021, ``transforms.execute.pass_at_k.pass_at_k``) for every
k = 1..n, summed over puzzles (the paper reports "solved out of 228") and averaged.

``solved_within``: what the reference's solve.py actually prints - with ``fixed_temp`` it samples each puzzle
until the first verified attempt (at most ``attempts``) and counts the puzzles whose first success came within
k attempts, for k = 1, 2, 4, ..., attempts. That is one draw of pass@k, not the unbiased estimate.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from transforms.execute.pass_at_k import pass_at_k


@dataclasses.dataclass(frozen=True)
class PassAtK:
    k: int
    solved: float  # expected number of puzzles solved with k attempts (sum of per-puzzle pass@k)
    rate: float  # solved / puzzles


def pass_at_k_curve(per_puzzle: Sequence[tuple[int, int]], max_k: int | None = None) -> list[PassAtK]:
    """pass@k for every k from 1 to ``max_k`` (default: the smallest n), from per-puzzle (n attempts, c
    verified)."""
    if not per_puzzle:
        raise ValueError("no puzzles")
    smallest = min(n for n, _ in per_puzzle)
    top = smallest if max_k is None else max_k
    if not 1 <= top <= smallest:
        raise ValueError(f"k must lie in 1..{smallest} (the fewest attempts of any puzzle), got {top}")
    curve = []
    for k in range(1, top + 1):
        solved = sum(pass_at_k(n, c, k) for n, c in per_puzzle)
        curve.append(PassAtK(k, solved, solved / len(per_puzzle)))
    return curve


def reference_ks(attempts: int) -> list[int]:
    """1, 2, 4, ... doubling, then ``attempts`` (solve.py's table)."""
    ks, k = [], 1
    while True:
        ks.append(k)
        if k == attempts:
            return ks
        k = min(2 * k, attempts)


def solved_within(first_successes: Iterable[int | None], attempts: int) -> dict[int, int]:
    """Puzzles whose first verified attempt (1-based; None = never) came within k attempts, for solve.py's ks."""
    firsts = list(first_successes)
    if any(f is not None and not 1 <= f <= attempts for f in firsts):
        raise ValueError(f"first successes must lie in 1..{attempts}")
    return {k: sum(f is not None and f <= k for f in firsts) for k in reference_ks(attempts)}
