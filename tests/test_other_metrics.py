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


def test_parc_of_constant_features_is_an_error_not_minus_infinity():
    _, y = make_blobs(n_per_class=10, n_classes=3, n_features=5)
    for x in (np.ones((30, 5)), np.ones((30, 40))):  # N > D and N < D
        with pytest.raises(ValueError, match="equally dissimilar"):
            parc(x, y)


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


def _spectrum(n, d, variances, seed=0):
    """n samples in d dimensions whose centred data has exactly these variances along a
    random orthonormal basis (the principal components are known)."""
    rng = np.random.default_rng(seed)
    k = len(variances)
    centred = rng.normal(size=(n, k))
    centred -= centred.mean(axis=0)
    scores = np.linalg.qr(centred)[0] * np.sqrt(np.asarray(variances) * (n - 1))  # centred, orthogonal
    basis = np.linalg.qr(rng.normal(size=(d, k)))[0]
    return scores @ basis.T + rng.normal(size=d)  # plus a mean


@pytest.mark.parametrize("shape", [(200, 30), (40, 40), (30, 90)], ids=["n > d", "n = d", "n < d"])
@pytest.mark.parametrize("n_components", [5, 0.8, 0.999])
def test_principal_components_are_sklearns_full_svd_pca_with_its_signs(shape, n_components):
    from pedlib.metrics._pca import principal_components

    x, _ = make_blobs(n_per_class=shape[0] // 2, n_classes=2, n_features=shape[1], seed=3)
    x = x * np.linspace(0.2, 3.0, shape[1])  # distinct variances
    expected = PCA(n_components=n_components, svd_solver="full").fit_transform(x)
    got = principal_components(x, n_components)
    assert got.shape == expected.shape  # the same number of components for a variance share
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    before = x.copy()
    principal_components(x, n_components)
    np.testing.assert_array_equal(x, before)  # the input is not modified


@pytest.mark.parametrize("shape", [(60, 20), (20, 60)], ids=["n > d", "n < d"])
def test_principal_components_with_a_tiny_kept_variance_go_through_the_svd(shape, monkeypatch):
    """A component holding 1e-9 of the largest variance would lose digits to the squared
    spectrum of the eigenproblem: the SVD computes it."""
    from pedlib.metrics import _pca

    calls = []
    through_svd = _pca._from_svd
    monkeypatch.setattr(_pca, "_from_svd", lambda *a: calls.append(a) or through_svd(*a))
    x = _spectrum(*shape, variances=[5.0, 2.0, 1.0, 1e-9])
    expected = PCA(n_components=4, svd_solver="full").fit_transform(x)
    np.testing.assert_allclose(_pca.principal_components(x, 4), expected, rtol=1e-7, atol=0)
    assert len(calls) == 1
    _pca.principal_components(x, 3)  # the three large components: the eigenproblem
    assert len(calls) == 1
