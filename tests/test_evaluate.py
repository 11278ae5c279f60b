import pytest
import scipy.stats

from pedlib import evaluate

SCORES = {"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.4, "e": -0.2}
ACCURACIES = {"a": 80.0, "b": 70.0, "c": 81.0, "d": 60.0, "e": 65.0}


def test_weighted_tau_equals_scipy_on_known_inputs():
    names = sorted(SCORES)
    expected = scipy.stats.weightedtau([SCORES[k] for k in names], [ACCURACIES[k] for k in names]).statistic
    assert evaluate.weighted_tau(SCORES, ACCURACIES) == pytest.approx(expected)


def test_weighted_tau_is_one_for_a_perfect_ranking_and_minus_one_for_reversed():
    acc = {k: float(i) for i, k in enumerate("abcdef")}
    assert evaluate.weighted_tau(acc, acc) == pytest.approx(1.0)
    assert evaluate.weighted_tau({k: -v for k, v in acc.items()}, acc) == pytest.approx(-1.0)


def test_weighted_tau_does_not_depend_on_dict_order():
    reordered = dict(reversed(list(SCORES.items())))
    assert evaluate.weighted_tau(reordered, ACCURACIES) == evaluate.weighted_tau(SCORES, ACCURACIES)


def test_mismatched_models_are_an_error():
    with pytest.raises(ValueError, match=r"no accuracy for \['a'\]"):
        evaluate.weighted_tau(SCORES, {k: v for k, v in ACCURACIES.items() if k != "a"})
    with pytest.raises(ValueError, match=r"no score for \['z'\]"):
        evaluate.kendall_tau(SCORES, {**ACCURACIES, "z": 1.0})


def test_non_finite_scores_are_an_error():
    with pytest.raises(ValueError, match="not finite"):
        evaluate.weighted_tau({**SCORES, "a": float("nan")}, ACCURACIES)


def test_top1_relative_accuracy_and_topk_recall_by_hand():
    # Top score: a (80) vs best c (81).
    assert evaluate.top1_relative_accuracy(SCORES, ACCURACIES) == pytest.approx(80 / 81)
    # Top-2 by score {a, c}; by accuracy {c, a}.
    assert evaluate.topk_recall(SCORES, ACCURACIES, k=2) == 1.0
    # Top-3 by score {a, c, d}; by accuracy {c, a, b}.
    assert evaluate.topk_recall(SCORES, ACCURACIES, k=3) == pytest.approx(2 / 3)


def test_correlations_agree_with_scipy():
    result = evaluate.correlations(SCORES, ACCURACIES)
    s = [SCORES[k] for k in sorted(SCORES)]
    a = [ACCURACIES[k] for k in sorted(SCORES)]
    assert result["kendall_tau"] == pytest.approx(scipy.stats.kendalltau(s, a).statistic)
    assert result["pearson"] == pytest.approx(scipy.stats.pearsonr(s, a).statistic)
    assert result["spearman"] == pytest.approx(scipy.stats.spearmanr(s, a).statistic)


def test_bootstrap_interval_contains_the_estimate_and_is_seeded():
    low, high = evaluate.bootstrap_ci(SCORES, ACCURACIES, n_boot=200, seed=1)
    assert low <= evaluate.weighted_tau(SCORES, ACCURACIES) <= high
    assert (low, high) == evaluate.bootstrap_ci(SCORES, ACCURACIES, n_boot=200, seed=1)


def test_scores_equal_to_the_last_bits_are_ties_not_a_ranking():
    """Six saturated H-scores of C - 1 computed in different orders: their order is rounding
    noise, and the evaluation must not depend on it."""
    from pedlib.evaluate import TIE_RTOL, merge_ties

    accuracies = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    noisy = {"a": 10.999999999999964, "b": 11.000000000000007, "c": 11.0, "d": 3.0}
    flipped = {"a": 11.000000000000007, "b": 10.999999999999964, "c": 11.0, "d": 3.0}
    exact = {"a": 11.0, "b": 11.0, "c": 11.0, "d": 3.0}
    assert evaluate.weighted_tau(noisy, accuracies) == evaluate.weighted_tau(flipped, accuracies) \
        == evaluate.weighted_tau(exact, accuracies)
    assert merge_ties([1.0, 1.0 + 0.5 * TIE_RTOL, 1.0 + 10 * TIE_RTOL]).tolist() == [1.0, 1.0, 1.0 + 10 * TIE_RTOL]
    assert merge_ties([0.0, -0.0, 1e-300]).tolist() == [0.0, 0.0, 1e-300]  # relative: 0 and 1e-300 differ
