"""pass@k: the unbiased estimator against its definition, and the summary over problems."""
from __future__ import annotations

import itertools

import pytest

from transforms.execute.pass_at_k import pass_at_k, summarize_results


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    """The definition: the share of k-subsets of the n samples that hold at least one pass."""
    outcomes = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n, c, k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (6, 1, 5), (7, 7, 2), (8, 0, 4)])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k))


def test_pass_at_k_rejects_impossible_counts():
    for n, c, k in ((3, 4, 1), (3, 1, 4), (3, 1, 0)):
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_summary_averages_over_problems_and_skips_k_above_n():
    results = [{"task_id": "a", "status": "passed"}, {"task_id": "a", "status": "failed"},
               {"task_id": "b", "status": "timeout"}, {"task_id": "b", "status": "failed"}]
    summary = summarize_results(results, ks=(1, 2, 3))
    assert summary["pass@1"] == 25.0 and summary["pass@2"] == 50.0 and "pass@3" not in summary
    assert summary["pass_k_omitted"] == [3]  # asked for, not computable: said, not silently dropped
    assert "pass_k_omitted" not in summarize_results(results, ks=(1, 2))
    assert summary["statuses"] == {"failed": 2, "passed": 1, "timeout": 1} and summary["solved"] == ["a"]




def test_a_problem_without_samples_counts_as_unsolved():
    results = [{"task_id": "a", "status": "passed"}, {"task_id": "a", "status": "passed"}]
    assert summarize_results(results, ks=(1,))["pass@1"] == 100.0  # without the task list, "b" is unknown
    summary = summarize_results(results, ks=(1, 2), task_ids=["a", "b"])
    assert summary["problems"] == 2 and summary["pass@1"] == 50.0 and summary["pass@2"] == 50.0
    assert summary["solved"] == ["a"] and summary["samples"] == 2
