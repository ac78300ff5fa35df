"""Selection of the best candidate(s) of one snippet (pure logic; the Select stage calls it).

The paper keeps the single best candidate per snippet (top-1, ties to the earlier candidate) with no threshold.
``top_k`` > 1 and ``min_score`` are options; see ``transforms.instruct.options.TOP_K_WARNING`` before using top-k:
in the paper, top-3 and top-5 made the fine-tuned model worse.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, NamedTuple

from transforms.instruct.options import SelectionConfig

NO_CANDIDATES = "no_candidates"
BELOW_MIN_SCORE = "below_min_score"


class SelectionOutcome(NamedTuple):
    selected: list[dict[str, Any]]  # winners, best first, each with all_scores/all_candidate_indices and rank
    not_selected: list[dict[str, Any]]  # the other scored candidates (not errors; for audit and experiments)
    reject_reason: str | None  # set when the snippet has no winner
    detail: str


def _score_key(record: Mapping[str, Any]) -> float:
    score = record.get("score")
    return -math.inf if score is None or math.isnan(score) else float(score)


def rank(scored: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Best first; ties go to the lower candidate index. Duplicate deliveries of one candidate id count once."""
    unique: dict[str, dict[str, Any]] = {}
    for record in scored:
        unique.setdefault(record["id"], dict(record))
    return sorted(unique.values(), key=lambda r: (-_score_key(r), r["candidate_index"], r["id"]))


def select(scored: Iterable[Mapping[str, Any]], config: SelectionConfig = SelectionConfig()) -> SelectionOutcome:
    """Pick the winners among the scored candidates of ONE snippet."""
    ranked = rank(scored)
    if not ranked:
        return SelectionOutcome([], [], NO_CANDIDATES, "no scored candidate reached selection")
    by_index = sorted(ranked, key=lambda r: (r["candidate_index"], r["id"]))
    all_scores = [None if r.get("score") is None else float(r["score"]) for r in by_index]
    all_indices = [int(r["candidate_index"]) for r in by_index]
    eligible = ranked if config.min_score is None else [r for r in ranked if _score_key(r) >= config.min_score]
    if not eligible:
        best = ranked[0]
        return SelectionOutcome(
            [], ranked, BELOW_MIN_SCORE,
            f"best score {best.get('score')} (candidate {best['candidate_index']}) < min_score {config.min_score}",
        )
    winners = eligible[: config.top_k]
    winner_ids = {r["id"] for r in winners}
    selected = [
        {**r, "all_scores": list(all_scores), "all_candidate_indices": list(all_indices), "rank": position}
        for position, r in enumerate(winners)
    ]
    not_selected = [r for r in ranked if r["id"] not in winner_ids]
    return SelectionOutcome(selected, not_selected, None, "")
