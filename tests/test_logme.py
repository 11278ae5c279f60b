import numpy as np
import pytest

from pedlib.metrics import logme
from oracles import logme_explicit
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
