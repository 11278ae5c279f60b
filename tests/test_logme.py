import numpy as np
import pytest

from pedlib.metrics import logme, logme_reference
from oracles import logme_explicit, logme_reference_literal
from conftest import make_blobs


def test_logme_matches_explicit_evidence_on_full_rank_features(blobs):
    x, y = blobs
    assert logme(x, y) == pytest.approx(logme_explicit(x, y), rel=1e-9)


def test_logme_counts_zero_eigenvalues_when_rank_deficient():
    # N < D: F^T F has D - N zero eigenvalues that the log-determinant must include.
    x, y = make_blobs(n_per_class=5, n_classes=3, n_features=40)
    assert logme(x, y) == pytest.approx(logme_explicit(x, y), rel=1e-8)


def test_logme_with_duplicated_columns_includes_their_zero_eigenvalues(blobs):
    x, y = blobs
    wide = np.hstack([x, x[:, :3]])  # N > D but rank D - 3
    assert logme(wide, y) == pytest.approx(logme_explicit(wide, y), rel=1e-7)


def test_logme_on_orthogonal_one_hot_features():
    # Orthogonal columns: F^T F = diag(n_c); the explicit evidence is easy to form.
    y = np.repeat(np.arange(3), [4, 5, 6])
    x = np.eye(3)[y] * 2.0
    assert logme(x, y) == pytest.approx(logme_explicit(x, y), rel=1e-9)


def test_logme_is_invariant_to_rotating_the_features(blobs):
    x, y = blobs
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(x.shape[1], x.shape[1])))
    assert logme(x @ q, y) == pytest.approx(logme(x, y), rel=1e-9)


def test_logme_prefers_features_that_encode_the_labels():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 50)
    noise = rng.normal(size=(200, 8))
    informative = noise + 3 * np.eye(4, 8)[y]
    assert logme(informative, y) > logme(noise, y)


# --- logme_reference: the reference code's two branches, exactly -------------------------------

def _evidence_by_hand(sigma, x2, n, d, n_c, terms):
    """The fixed point for one class in scalar Python, from the eigenvalues ``sigma`` of the
    Gram matrix and the squared projections ``x2`` of the target on their directions; the
    log-determinant sums ``log(alpha + beta sigma)`` over ``sigma`` plus ``terms - len(sigma)``
    eigenvalues alpha (terms = D for the true evidence)."""
    import math
    alpha = beta = 1.0
    for _ in range(11):
        t = alpha / beta
        gamma = sum(s / (s + t) for s in sigma)
        m2 = sum(s * v / (t + s) ** 2 for s, v in zip(sigma, x2))
        res2 = sum(v / (1 + s / t) ** 2 for s, v in zip(sigma, x2)) + (n_c - sum(x2))
        alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
        if abs(alpha / beta - t) / t <= 1e-3:
            break
    log_det = sum(math.log(alpha + beta * s) for s in sigma) + (terms - len(sigma)) * math.log(alpha)
    return (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - log_det / 2 - beta / 2 * res2
            - alpha / 2 * m2 - n / 2 * math.log(2 * math.pi)) / n


def test_logme_reference_on_n_below_d_by_hand_sums_n_eigenvalues():
    # Orthogonal rows: F F^T = diag(s^2), U = I, so x = U^T y = y. N = 4 < D = 6.
    scales = [3.0, 0.5, 2.0, 1.5]
    x = np.zeros((4, 6))
    x[np.arange(4), np.arange(4)] = scales
    y = np.array([0, 0, 1, 1])
    sigma = [s * s for s in scales]
    per_class = [[float(v) for v in (y == c)] for c in (0, 1)]
    reference = np.mean([_evidence_by_hand(sigma, x2, 4, 6, 2, terms=4) for x2 in per_class])
    true = np.mean([_evidence_by_hand(sigma, x2, 4, 6, 2, terms=6) for x2 in per_class])
    assert logme_reference(x, y) == pytest.approx(reference, rel=1e-12)
    assert logme(x, y) == pytest.approx(true, rel=1e-12)
    assert logme_reference(x, y) == pytest.approx(logme_reference_literal(x, y)[0], rel=1e-12)


def test_logme_reference_on_n_above_d_by_hand_sums_all_d_eigenvalues_including_a_dead_unit():
    # Orthogonal columns and one dead unit: F^T F = diag(10, 13, 0); V = I, x_i = f_i^T y / s_i.
    x = np.array([[1.0, 0, 0], [3, 0, 0], [0, 2, 0], [0, 3, 0], [0, 0, 0], [0, 0, 0]])
    y = np.array([0, 0, 1, 1, 2, 2])
    sigma = [10.0, 13.0]  # the zero eigenvalue enters only as a log(alpha) term
    by_hand = []
    for c in range(3):
        target = (y == c).astype(float)
        x2 = [float(x[:, i] @ target) ** 2 / s for i, s in enumerate(sigma)]
        by_hand.append(_evidence_by_hand(sigma, x2, 6, 3, 2.0, terms=3))
    assert logme_reference(x, y) == logme(x, y)
    assert logme(x, y) == pytest.approx(np.mean(by_hand), rel=1e-12)
    assert logme(x, y) == pytest.approx(logme_explicit(x, y), rel=1e-9)


def test_logme_reference_equals_the_reference_code_with_dead_units_when_n_exceeds_d():
    """The issue's reproduction: the reference's SVD of F^T F returns the dead units' zero
    eigenvalues at rounding level, keeps them (sqrt > 1e-10) and so computes the exact evidence."""
    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(400, 64)), 0)
    x[:, 40:] = 0
    y = np.repeat(np.arange(4), 100)
    expected, _ = logme_reference_literal(x, y)
    assert expected == pytest.approx(-0.6110, abs=5e-4)
    assert logme_reference(x, y) == pytest.approx(expected, rel=1e-9)
    assert logme_reference(x, y) == logme(x, y)


@pytest.mark.parametrize("n, d", [(40, 40), (30, 40), (60, 40)])
def test_logme_reference_equals_the_reference_code_at_n_equal_below_and_above_d(n, d):
    x, y = make_blobs(n_per_class=n // 4, n_classes=4, n_features=d, seed=n)
    assert logme_reference(x, y) == pytest.approx(logme_reference_literal(x, y)[0], rel=1e-9)
    if n >= d:  # the reference keeps all D terms: the true evidence
        assert logme_reference(x, y) == logme(x, y)


def test_logme_has_no_rank_tolerance_a_nearly_dead_unit_scores_like_a_dead_one():
    x, y = make_blobs(n_per_class=50, n_classes=4, n_features=16, seed=3)
    dead = np.hstack([x, np.zeros((len(x), 4))])
    faint = dead.copy()
    faint[:, -4:] = np.random.default_rng(1).normal(scale=1e-9, size=(len(x), 4))
    for metric in (logme, logme_reference):
        assert metric(faint, y) == pytest.approx(metric(dead, y), rel=1e-9)


@pytest.mark.parametrize("n, d", [(1200, 384), (400, 1024)])
def test_logme_variants_do_not_move_with_the_blas_thread_count(n, d):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    rng = np.random.default_rng(n)
    y = np.repeat(np.arange(8), n // 8)
    x = np.maximum(rng.normal(size=(n, d)) + np.eye(8, d)[y], 0)
    x[:, d // 2:] = 0  # dead units: the rank is far below min(N, D)
    values = {}
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads):
            values[threads] = (logme(x, y), logme_reference(x, y))
    assert values[1] == pytest.approx(values[2], rel=1e-9)
