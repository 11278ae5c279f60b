import numpy as np
import pytest
import scipy.stats
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from pedlib.metrics import hscore, leep, nce, nleep, parc, transrate
from oracles import hscore_explicit, transrate_explicit
from conftest import make_blobs


def test_hscore_matches_pinv_trace_formula(blobs):
    x, y = blobs
    assert hscore(x, y) == pytest.approx(hscore_explicit(x, y), rel=1e-9)


def test_hscore_with_singular_covariance_matches_pinv(blobs):
    x, y = blobs
    x = np.hstack([x, x[:, :2]])
    assert hscore(x, y) == pytest.approx(hscore_explicit(x, y), rel=1e-6)


@pytest.mark.parametrize("shape", [(40, 4, 12), (5, 3, 30)])
def test_transrate_matches_coding_rate_formula(shape):
    x, y = make_blobs(*shape)
    assert transrate(x, y) == pytest.approx(transrate_explicit(x, y), rel=1e-9)


def test_nleep_matches_its_definition_given_the_same_mixture(blobs):
    x, y = blobs
    reduced = PCA(n_components=0.8, svd_solver="full").fit_transform(x)
    post = GaussianMixture(n_components=2 * 4, random_state=3).fit(reduced).predict_proba(reduced)
    pyz = np.array([post[y == c].sum(axis=0) for c in range(4)]) / len(y)
    py_z = pyz / pyz.sum(axis=0)
    expected = np.mean([post[i] @ py_z[y[i]] for i in range(len(y))])
    assert nleep(x, y, component_ratio=2, seed=3) == pytest.approx(expected, rel=1e-6)


def test_nleep_is_seeded():
    x, y = make_blobs(separation=0.5)
    assert nleep(x, y, seed=1) == nleep(x, y, seed=1)


def test_nleep_needs_enough_samples_for_its_components():
    x, y = make_blobs(n_per_class=3, n_classes=2)
    with pytest.raises(ValueError, match="component_ratio"):
        nleep(x, y, component_ratio=5)


def test_parc_equals_spearman_of_dissimilarity_matrices(blobs):
    x, y = blobs
    z = (x - x.mean(0)) / x.std(0)
    rdm = 1 - np.corrcoef(z)
    upper = np.triu_indices(len(y), 1)
    label_rdm = (y[:, None] != y[None, :]).astype(float)
    expected = scipy.stats.spearmanr(rdm[upper], label_rdm[upper]).statistic * 100
    assert parc(x, y, n_dims=64) == pytest.approx(expected, rel=1e-9)


def test_parc_reduces_to_n_dims_with_pca(blobs):
    x, y = blobs
    reduced = PCA(n_components=5, svd_solver="full").fit_transform(x)
    assert parc(x, y, n_dims=5) == pytest.approx(parc(reduced, y, n_dims=64), rel=1e-9)


def test_parc_with_fewer_samples_than_dims_keeps_the_datas_rank():
    x, y = make_blobs(n_per_class=5, n_classes=3, n_features=64)
    reduced = PCA(n_components=14, svd_solver="full").fit_transform(x)  # N - 1 = 14 < 32
    assert parc(x, y) == pytest.approx(parc(reduced, y, n_dims=64), rel=1e-9)


def test_parc_subsample_is_stratified_and_seeded():
    x, y = make_blobs(n_per_class=30, n_classes=3)
    a = parc(x, y, max_samples=30, seed=0)
    assert a == parc(x, y, max_samples=30, seed=0)
    assert a != parc(x, y, max_samples=30, seed=1)


def test_leep_hand_computed():
    theta = np.array([[0.9, 0.1], [0.2, 0.8]])
    y = [0, 1]
    # P(y,z) = [[0.45, 0.05], [0.1, 0.4]]; P(z) = [0.55, 0.45]
    p_y_z = np.array([[0.45 / 0.55, 0.05 / 0.45], [0.1 / 0.55, 0.4 / 0.45]])
    expected = 0.5 * (np.log(0.9 * p_y_z[0, 0] + 0.1 * p_y_z[0, 1])
                      + np.log(0.2 * p_y_z[1, 0] + 0.8 * p_y_z[1, 1]))
    assert leep(theta, y) == pytest.approx(expected)


def test_nce_is_zero_when_source_predictions_determine_the_labels():
    theta = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.1, 0.8], [0.0, 0.3, 0.7]])
    assert nce(theta, ["a", "a", "b", "b"]) == pytest.approx(0.0)


def test_nce_is_minus_label_entropy_when_predictions_are_constant():
    theta = np.tile([0.6, 0.4], (4, 1))
    assert nce(theta, [0, 0, 0, 1]) == pytest.approx(-scipy.stats.entropy([0.75, 0.25]))


def test_probability_metrics_reject_logits():
    with pytest.raises(ValueError, match="sum to 1"):
        leep(np.array([[2.0, 1.0], [0.5, 3.0]]), [0, 1])
    with pytest.raises(ValueError, match="negative"):
        nce(np.array([[-1.0, 2.0], [0.5, 0.5]]), [0, 1])
