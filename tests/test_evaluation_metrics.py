"""Reward-modelling metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from rayalign.evaluation.metrics import (
    RankGroup, best_of_n, exact_match, kendall_tau, pairwise_accuracy, perfect_score_best,
    ranks_to_reference, reward_model_metrics, spearman,
)


def test_one_swap_by_hand():
    # Judge swaps the 2nd and 3rd answers. 6 pairs, 1 discordant:
    # pairwise 5/6; tau = (C - D) / 6 = (5 - 1) / 6 = 2/3;
    # Spearman = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60 = 0.8.
    g = RankGroup("p", scores=[1, 3, 2, 4], reference=[1, 2, 3, 4])
    pa, n = pairwise_accuracy([g])
    assert n == 6 and pa == pytest.approx(5 / 6)
    assert kendall_tau([g])[0] == pytest.approx(2 / 3)
    assert spearman([g])[0] == pytest.approx(0.8)
    assert exact_match([g]) == 0.0
    assert best_of_n([g]) == 1.0


def test_reversed_order_by_hand():
    g = RankGroup("p", scores=[3, 2, 1], reference=[1, 2, 3])
    assert pairwise_accuracy([g])[0] == 0.0
    assert kendall_tau([g])[0] == pytest.approx(-1.0)
    assert spearman([g])[0] == pytest.approx(-1.0)
    assert best_of_n([g]) == 0.0


def test_ties_and_unparseable_are_not_free_points():
    # A judge that scores every answer 3 agrees with nothing, matches nothing,
    # has no defined correlation (counted as 0) and gets 1/3 best-of-3 by chance.
    flat = RankGroup("flat", scores=[3, 3, 3], reference=[3, 2, 1])
    m = reward_model_metrics([flat])
    assert m["pairwise_accuracy"] == 0.0
    assert m["exact_match"] == 0.0
    assert m["kendall_tau"] == 0.0 and m["n_groups_corr_undefined"] == 1
    assert m["best_of_n"] == pytest.approx(1 / 3)
    # Unparseable (None) sits below every parsed score: here that is the right place.
    g = RankGroup("u", scores=[5, None, 2], reference=[3, 1, 2])
    assert pairwise_accuracy([g])[0] == 1.0
    assert reward_model_metrics([g])["n_unparsed"] == 1


def test_reference_ties_are_skipped_in_pairwise_but_count_in_exact_match():
    g = RankGroup("t", scores=[4, 2, 2], reference=[2, 1, 1])
    pa, n = pairwise_accuracy([g])
    assert n == 2 and pa == 1.0
    assert exact_match([g]) == 1.0
    g2 = RankGroup("t2", scores=[4, 3, 2], reference=[2, 1, 1])
    assert exact_match([g2]) == 0.0


def test_perfect_score_best_and_aggregation_over_groups():
    a = RankGroup("a", scores=[5, 5, 1], reference=[2, 1, 0])   # two 5s, one is best
    b = RankGroup("b", scores=[2, 5, 1], reference=[2, 0, 1])   # the 5 is the worst
    v, n = perfect_score_best([a, b])
    assert n == 3 and v == pytest.approx(1 / 3)
    # best-of-n: a -> top {0,1}, best {0}: 1/2 ; b -> top {1}, best {0}: 0  => 0.25
    assert best_of_n([a, b]) == pytest.approx(0.25)
    assert math.isnan(perfect_score_best([RankGroup("c", [1, 2], [1, 2])])[0])


def test_ranks_to_reference_and_validation():
    assert ranks_to_reference([0, 2, 1]) == [0.0, -2.0, -1.0]
    with pytest.raises(ValueError, match="group 'x'"):
        RankGroup("x", scores=[1, 2], reference=[1])
