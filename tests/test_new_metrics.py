"""logme_reference, hscore_shrinkage and the baselines (k-NN, dimension): against literal oracles,
hand-computed cases and invariants; saturation flags."""

import importlib

import numpy as np
import pytest

from pedlib import metrics, ped
from pedlib.metrics import dim, hscore, hscore_shrinkage, knn, logme, logme_reference

from conftest import make_blobs
from oracles import hscore_shrinkage_literal, knn_literal, logme_explicit, logme_reference_literal


def test_logme_reference_equals_logme_on_full_column_rank_features(blobs):
    x, y = blobs  # N = 160 > D = 12, full rank
    assert logme_reference(x, y) == logme(x, y)


def test_logme_reference_is_the_reference_code_when_n_is_below_d():
    x, y = make_blobs(n_per_class=4, n_classes=3, n_features=30, seed=2)  # N = 12 < D = 30
    expected, _ = logme_reference_literal(x, y)
    assert logme_reference(x, y) == pytest.approx(expected, rel=1e-9)


def test_logme_reference_leaves_out_d_minus_n_log_alpha_terms():
    """Hand-checked relation: the reference sums log(alpha + beta sigma) over N singular values,
    the true log-determinant over D; the missing D - N eigenvalues of A are alpha each, so
    L_reference - L = (D - N) / 2 * log(alpha) / N per class."""
    x, y = make_blobs(n_per_class=3, n_classes=2, n_features=10, seed=5)  # N = 6, D = 10
    reference, alphas = logme_reference_literal(x, y)
    n, d = x.shape
    assert logme_reference(x, y) - logme(x, y) == pytest.approx(np.mean((d - n) / 2 * np.log(alphas) / n), rel=1e-7)


def test_logme_reference_with_dead_units_and_n_above_d_is_logme():
    x, y = make_blobs(n_per_class=30, n_classes=3, n_features=8, seed=1)
    dead = np.hstack([x, np.zeros((len(x), 2))])  # N > D, two constant-zero units
    assert logme_reference(dead, y) == logme(dead, y)
    assert logme(dead, y) == pytest.approx(logme_explicit(dead, y), rel=1e-9)


def test_hscore_shrinkage_matches_the_explicit_definition(blobs):
    x, y = blobs
    assert hscore_shrinkage(x, y) == pytest.approx(hscore_shrinkage_literal(x, y), rel=1e-8)
    wide, labels = make_blobs(n_per_class=5, n_classes=3, n_features=40, seed=4)
    assert hscore_shrinkage(wide, labels) == pytest.approx(hscore_shrinkage_literal(wide, labels), rel=1e-7)


def test_hscore_saturates_at_c_minus_1_when_d_reaches_n_and_shrinkage_does_not():
    x, y = make_blobs(n_per_class=5, n_classes=4, n_features=40, seed=3)  # D >= N - 1
    info = metrics.info("hscore")
    assert hscore(x, y) == pytest.approx(3.0, rel=1e-9)
    assert info.saturated(hscore(x, y), 4, len(x), x.shape[1])
    shrunk = hscore_shrinkage(x, y)
    assert 0 < shrunk < 3 and not metrics.info("hscore_shrinkage").saturated(shrunk, 4, len(x), 40)
    tall, labels = make_blobs(n_per_class=40, n_classes=4, n_features=6, seed=3)
    assert not info.saturated(hscore(tall, labels), 4, len(tall), 6)


def test_knn_is_the_leave_one_out_weighted_vote(blobs):
    x, y = blobs
    assert knn(x, y) == knn_literal(x, y)
    assert knn(x, y, k=3) == knn_literal(x, y, k=3)
    assert knn(x[::23], y[::23], k=50) == knn_literal(x[::23], y[::23], k=50)  # 7 samples: k capped at N - 1


def test_knn_hand_computed_case():
    # Points on the unit circle (cosine similarity = cos of the angle between them): class 0
    # at 0 and 10 degrees, class 1 at 180 and 190 degrees and a stray one at -3 degrees.
    # With k = 1 each point takes the class of its angularly nearest other point:
    # 0 -> -3 (class 1, wrong), 10 -> 0 (right), 180 <-> 190 (right), -3 -> 0 (class 0, wrong).
    angles = np.radians([0.0, 10.0, 180.0, 190.0, -3.0])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1) * np.array([[1.0], [2.0], [0.5], [3.0], [1.0]])
    y = np.array([0, 0, 1, 1, 1])
    assert knn(x, y, k=1) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        knn(x, y, k=0)


def test_dim_is_the_feature_dimension_and_ped_cannot_change_it(blobs, reference):
    x, y = blobs
    assert dim(x, y) == 12.0 and metrics.info("dim").kind == "baseline"
    assert ped.score(x, y, "dim", reference) == 12.0
    assert set(metrics.available(kind="baseline")) == {"knn", "dim"}


@pytest.mark.parametrize("shape", [(60, 20), (20, 60), (30, 1)], ids=["n > d", "n < d", "one feature"])
def test_ledoit_wolf_shrinkage_is_sklearns_from_either_gram_matrix(shape):
    from sklearn.covariance import ledoit_wolf
    from pedlib.metrics.hscore import _ledoit_wolf

    x = np.random.default_rng(1).normal(size=shape) * np.linspace(0.5, 2.0, shape[1]) + 3.0
    n, d = shape
    centred = x - x.mean(axis=0)
    covariance, shrinkage = ledoit_wolf(x)
    for gram in (centred @ centred.T, centred.T @ centred):
        alpha, mu = _ledoit_wolf(np.einsum("ij,ij->i", centred, centred), gram, n, d)
        assert alpha == pytest.approx(shrinkage, rel=1e-12, abs=1e-15)
        expected = np.trace(np.cov(x, rowvar=False, bias=True).reshape(d, d)) / d
        assert mu == pytest.approx(expected, rel=1e-12)
    assert (shrinkage == 0) == (d == 1)


@pytest.mark.parametrize("shape", [(40, 3, 12), (5, 3, 40)], ids=["n > d", "n < d"])
def test_hscore_shrinkage_without_shrinkage_is_the_hscore(shape, monkeypatch):
    """alpha = 0 (the Ledoit-Wolf estimate is the covariance itself) takes the pseudo-inverse
    branch, N <= D included: the score is then the H-score (both normalise alike)."""
    module = importlib.import_module("pedlib.metrics.hscore")  # the module, not the function

    x, y = make_blobs(*shape, seed=2)
    shrunk = hscore_shrinkage(x, y)
    monkeypatch.setattr(module, "_ledoit_wolf", lambda norms, gram, n, d: (0.0, float(norms.sum() / n / d)))
    assert hscore_shrinkage(x, y) == pytest.approx(hscore(x, y), rel=1e-6)
    assert hscore_shrinkage(x, y) != pytest.approx(shrunk, rel=1e-3)
