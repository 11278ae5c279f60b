import numpy as np
import pytest
import scipy.stats

from pedlib import correlations

SCORES = {"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.4, "e": -0.2}
ACCURACIES = {"a": 80.0, "b": 70.0, "c": 81.0, "d": 60.0, "e": 65.0}


def test_weighted_tau_equals_scipy_on_known_inputs():
    names = sorted(SCORES)
    expected = scipy.stats.weightedtau([SCORES[k] for k in names], [ACCURACIES[k] for k in names]).statistic
    assert correlations.weighted_tau(SCORES, ACCURACIES) == pytest.approx(expected)


def test_weighted_tau_is_one_for_a_perfect_ranking_and_minus_one_for_reversed():
    acc = {k: float(i) for i, k in enumerate("abcdef")}
    assert correlations.weighted_tau(acc, acc) == pytest.approx(1.0)
    assert correlations.weighted_tau({k: -v for k, v in acc.items()}, acc) == pytest.approx(-1.0)


def test_weighted_tau_does_not_depend_on_dict_order():
    reordered = dict(reversed(list(SCORES.items())))
    assert correlations.weighted_tau(reordered, ACCURACIES) == correlations.weighted_tau(SCORES, ACCURACIES)


def test_mismatched_models_are_an_error():
    with pytest.raises(ValueError, match=r"no accuracy for \['a'\]"):
        correlations.weighted_tau(SCORES, {k: v for k, v in ACCURACIES.items() if k != "a"})
    with pytest.raises(ValueError, match=r"no score for \['z'\]"):
        correlations.kendall_tau(SCORES, {**ACCURACIES, "z": 1.0})


def test_non_finite_scores_are_an_error():
    with pytest.raises(ValueError, match="not finite"):
        correlations.weighted_tau({**SCORES, "a": float("nan")}, ACCURACIES)


def test_top1_relative_accuracy_and_topk_recall_by_hand():
    # Top score: a (80) vs best c (81).
    assert correlations.top1_relative_accuracy(SCORES, ACCURACIES) == pytest.approx(80 / 81)
    # Top-2 by score {a, c}; by accuracy {c, a}.
    assert correlations.topk_recall(SCORES, ACCURACIES, k=2) == 1.0
    # Top-3 by score {a, c, d}; by accuracy {c, a, b}.
    assert correlations.topk_recall(SCORES, ACCURACIES, k=3) == pytest.approx(2 / 3)


def test_correlations_agree_with_scipy():
    result = correlations.correlations(SCORES, ACCURACIES)
    s = [SCORES[k] for k in sorted(SCORES)]
    a = [ACCURACIES[k] for k in sorted(SCORES)]
    assert result["kendall_tau"] == pytest.approx(scipy.stats.kendalltau(s, a).statistic)
    assert result["pearson"] == pytest.approx(scipy.stats.pearsonr(s, a).statistic)
    assert result["spearman"] == pytest.approx(scipy.stats.spearmanr(s, a).statistic)


def test_bootstrap_interval_contains_the_estimate_and_is_seeded():
    low, high = correlations.bootstrap_ci(SCORES, ACCURACIES, n_boot=200, seed=1)
    assert low <= correlations.weighted_tau(SCORES, ACCURACIES) <= high
    assert (low, high) == correlations.bootstrap_ci(SCORES, ACCURACIES, n_boot=200, seed=1)


def _resampled_rows(rng, rows=400):
    """Rows like a bootstrap's: repeated models, tied scores and accuracies, all-tied rows."""
    out = []
    for b in range(rows):
        n = int(rng.integers(2, 18))
        x = rng.integers(0, 4, n).astype(float) if b % 2 else rng.normal(size=n)
        y = rng.integers(0, 3, n).astype(float) if b % 3 else rng.normal(size=n)
        draw = rng.integers(0, n, n)
        out.append((x[draw], y[draw]))
    return out


def test_weighted_tau_batch_equals_scipy_row_by_row_with_ties_and_repeats():
    rng = np.random.default_rng(0)
    for x, y in _resampled_rows(rng):
        with np.errstate(all="ignore"):
            expected = scipy.stats.weightedtau(x, y).statistic
        got = correlations.weighted_tau_batch(x[None], y[None])
        assert got.shape == (1,)
        if np.isnan(expected):
            assert np.isnan(got[0])
        else:
            assert got[0] == pytest.approx(expected, abs=1e-12)


def test_weighted_tau_batch_leaves_out_invalid_elements_as_if_removed():
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, (300, 12)).astype(float), rng.normal(size=(300, 12))
    valid = rng.random((300, 12)) < 0.6
    got = correlations.weighted_tau_batch(x, y, valid)
    for row in range(300):
        keep = valid[row]
        with np.errstate(all="ignore"):
            expected = (scipy.stats.weightedtau(x[row, keep], y[row, keep]).statistic
                        if keep.sum() >= 2 else np.nan)
        assert np.isnan(got[row]) if np.isnan(expected) else got[row] == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        correlations.weighted_tau_batch(x, y[:, :5])


def test_weighted_tau_batch_blocks_give_the_same_rows(monkeypatch):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(50, 9)), rng.integers(0, 3, (50, 9)).astype(float)
    whole = correlations.weighted_tau_batch(x, y)
    monkeypatch.setattr(correlations, "_PAIR_BLOCK", 81 * 7)  # 7 rows a block, the last one short
    np.testing.assert_array_equal(correlations.weighted_tau_batch(x, y), whole)


def _scipy_percentiles(values, level=0.95):
    tail = (1 - level) / 2 * 100
    return tuple(np.percentile(values, [tail, 100 - tail]))


def test_bootstrap_interval_is_the_percentiles_of_scipy_taus_over_resamples():
    """The reference: one scipy call per resample of the seeded draws."""
    names = sorted(SCORES)
    s, a = np.array([SCORES[k] for k in names]), np.array([ACCURACIES[k] for k in names])
    values = []
    for draw in np.random.default_rng(4).integers(0, len(names), size=(300, len(names))):
        if len(np.unique(draw)) >= 2:
            with np.errstate(all="ignore"):
                value = scipy.stats.weightedtau(s[draw], a[draw]).statistic
            if np.isfinite(value):
                values.append(value)
    assert correlations.bootstrap_ci(SCORES, ACCURACIES, n_boot=300, seed=4) == pytest.approx(
        _scipy_percentiles(values), abs=1e-12)
    spearman = correlations.bootstrap_ci(SCORES, ACCURACIES, correlations.spearman, n_boot=50, seed=4)
    assert -1 <= spearman[0] <= spearman[1] <= 1


def test_bootstrap_mean_interval_draws_models_jointly_across_targets():
    """The reference: the same draw for every target, each target's tau by scipy on the drawn
    models it has, resamples with an undefined tau skipped."""
    rng = np.random.default_rng(5)
    models = [f"m{i}" for i in range(9)]
    pairs = {}
    for target, lacking in (("t1", set()), ("t2", {"m0", "m4"}), ("t3", {"m8"})):
        kept = [m for m in models if m not in lacking]
        pairs[target] = (dict(zip(kept, rng.integers(0, 4, len(kept)).astype(float))),
                         dict(zip(kept, rng.normal(size=len(kept)))))
    means = []
    for draw in np.random.default_rng(6).integers(0, len(models), size=(400, len(models))):
        drawn = [models[i] for i in draw]
        values = []
        for scores, accuracies in pairs.values():
            present = [m for m in drawn if m in scores]
            with np.errstate(all="ignore"):
                value = (scipy.stats.weightedtau([scores[m] for m in present], [accuracies[m] for m in present])
                         .statistic if len(set(present)) >= 2 else np.nan)
            values.append(value)
        if np.isfinite(values).all():
            means.append(np.mean(values))
    assert correlations.bootstrap_mean_ci(pairs, n_boot=400, seed=6) == pytest.approx(
        _scipy_percentiles(means), abs=1e-12)
    assert np.isnan(correlations.bootstrap_mean_ci({}, n_boot=10)).all()


def test_scores_equal_to_the_last_bits_are_ties_not_a_ranking():
    """Six saturated H-scores of C - 1 computed in different orders: their order is rounding
    noise, and the evaluation must not depend on it."""
    from pedlib.correlations import TIE_RTOL, merge_ties

    accuracies = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}
    noisy = {"a": 10.999999999999964, "b": 11.000000000000007, "c": 11.0, "d": 3.0}
    flipped = {"a": 11.000000000000007, "b": 10.999999999999964, "c": 11.0, "d": 3.0}
    exact = {"a": 11.0, "b": 11.0, "c": 11.0, "d": 3.0}
    assert correlations.weighted_tau(noisy, accuracies) == correlations.weighted_tau(flipped, accuracies) \
        == correlations.weighted_tau(exact, accuracies)
    assert merge_ties([1.0, 1.0 + 0.5 * TIE_RTOL, 1.0 + 10 * TIE_RTOL]).tolist() == [1.0, 1.0, 1.0 + 10 * TIE_RTOL]
    assert merge_ties([0.0, -0.0, 1e-300]).tolist() == [0.0, 0.0, 1e-300]  # relative: 0 and 1e-300 differ
