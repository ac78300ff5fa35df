import itertools

import pytest

from transforms.selfplay.evaluation import pass_at_k_curve, reference_ks, solved_within


def brute_force_pass_at_k(n, c, k):
    """Share of all k-subsets of n attempts (c of them verified) that hold a verified one."""
    attempts = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(attempts[i] for i in s) for s in subsets) / len(subsets)


def test_curve_gives_every_k_and_matches_counting_subsets():
    per_puzzle = [(6, 0), (6, 1), (6, 3), (6, 6)]
    curve = pass_at_k_curve(per_puzzle)
    assert [p.k for p in curve] == [1, 2, 3, 4, 5, 6]
    for point in curve:
        expected = sum(brute_force_pass_at_k(n, c, point.k) for n, c in per_puzzle)
        assert point.solved == pytest.approx(expected)
        assert point.rate == pytest.approx(expected / 4)
    assert curve[0].solved == pytest.approx(0 + 1 / 6 + 3 / 6 + 1)
    assert curve[-1].solved == pytest.approx(3)


def test_curve_stops_at_the_fewest_attempts_and_checks_its_input():
    assert len(pass_at_k_curve([(4, 1), (10, 2)])) == 4
    assert len(pass_at_k_curve([(10, 1)], max_k=3)) == 3
    with pytest.raises(ValueError):
        pass_at_k_curve([(4, 1)], max_k=5)
    with pytest.raises(ValueError):
        pass_at_k_curve([])


def test_the_references_first_success_table():
    assert reference_ks(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert solved_within([1, 3, None, 100, 64], 100) == {1: 1, 2: 1, 4: 2, 8: 2, 16: 2, 32: 2, 64: 3, 100: 4}
    with pytest.raises(ValueError):
        solved_within([101], 100)
