"""Selection per snippet: top-1 with ties to the lowest index, missing candidates, min-score, top-k."""
from __future__ import annotations

import math

import pytest

from transforms.instruct.options import SelectionConfig
from transforms.instruct.selection import BELOW_MIN_SCORE, NO_CANDIDATES, rank, select


def pair(index: int, score: float | None, snippet: str = "s1") -> dict:
    return {"id": f"{snippet}-c{index}", "snippet_id": snippet, "candidate_index": index, "score": score,
            "raw_logprobs": f"raw{index}"}


def test_top1_is_the_best_score():
    outcome = select([pair(0, 0.2), pair(1, 0.9), pair(2, 0.5)])
    assert [w["candidate_index"] for w in outcome.selected] == [1]
    assert outcome.selected[0]["raw_logprobs"] == "raw1"
    assert sorted(r["candidate_index"] for r in outcome.not_selected) == [0, 2]
    assert outcome.reject_reason is None


def test_ties_go_to_the_lowest_index_whatever_the_input_order():
    scored = [pair(4, 0.7), pair(2, 0.7), pair(3, 0.1), pair(6, 0.7)]
    for ordering in (scored, scored[::-1], scored[1:] + scored[:1]):
        assert select(ordering).selected[0]["candidate_index"] == 2


def test_all_scores_are_listed_by_candidate_index_with_missing_candidates():
    # Candidates 1 and 3 were rejected upstream: only 0, 2 and 4 reach selection.
    outcome = select([pair(4, 0.3), pair(0, 0.6), pair(2, 0.8)])
    winner = outcome.selected[0]
    assert winner["candidate_index"] == 2
    assert winner["all_candidate_indices"] == [0, 2, 4]
    assert winner["all_scores"] == [0.6, 0.8, 0.3]


def test_no_candidates_rejects_the_snippet():
    outcome = select([])
    assert outcome.selected == [] and outcome.reject_reason == NO_CANDIDATES


def test_min_score():
    scored = [pair(0, 0.2), pair(1, 0.4)]
    below = select(scored, SelectionConfig(min_score=0.5))
    assert below.selected == [] and below.reject_reason == BELOW_MIN_SCORE
    assert "0.4" in below.detail
    assert len(below.not_selected) == 2
    passing = select(scored, SelectionConfig(min_score=0.3))
    assert [w["candidate_index"] for w in passing.selected] == [1]


def test_top_k_keeps_the_best_k_in_order():
    outcome = select([pair(0, 0.1), pair(1, 0.9), pair(2, 0.5), pair(3, 0.9)], SelectionConfig(top_k=3))
    assert [(w["candidate_index"], w["rank"]) for w in outcome.selected] == [(1, 0), (3, 1), (2, 2)]
    assert [r["candidate_index"] for r in outcome.not_selected] == [0]
    assert all(w["all_candidate_indices"] == [0, 1, 2, 3] for w in outcome.selected)


def test_top_k_with_min_score_keeps_only_eligible():
    outcome = select([pair(0, 0.1), pair(1, 0.9), pair(2, 0.5)], SelectionConfig(top_k=3, min_score=0.4))
    assert [w["candidate_index"] for w in outcome.selected] == [1, 2]


def test_nan_and_missing_scores_rank_last():
    ranked = rank([pair(0, math.nan), pair(1, 0.01), pair(2, None)])
    assert [r["candidate_index"] for r in ranked] == [1, 0, 2]


def test_duplicate_deliveries_of_one_candidate_count_once():
    outcome = select([pair(0, 0.5), pair(0, 0.5), pair(1, 0.4)])
    assert outcome.selected[0]["all_candidate_indices"] == [0, 1]
    assert len(outcome.not_selected) == 1


def test_selection_config_validates():
    with pytest.raises(ValueError):
        SelectionConfig(top_k=0)
    with pytest.raises(ValueError):
        SelectionConfig(min_score=1.5)
