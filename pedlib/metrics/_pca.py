"""Exact PCA projections for the metrics (N-LEEP, PARC), from the smaller eigenproblem."""

from __future__ import annotations

import numpy as np
import scipy.linalg

# The eigenproblem squares the condition number: a component whose variance is below this
# share of the largest one would lose more digits than through the SVD, so it goes there.
_EIGH_MIN_RATIO = 1e-6


def principal_components(x: np.ndarray, n_components: int | float) -> np.ndarray:
    """``x`` projected on its first principal components, as
    ``sklearn.decomposition.PCA(n_components, svd_solver="full").fit_transform(x)``: the same
    components, the same signs (each component's largest loading positive), the same choice
    of how many for a variance share.

    The components come from the eigendecomposition of the smaller of the centred data's
    Gram matrices: the covariance (D x D) when N > D, else the samples' kernel (N x N), which
    for 1,280-d features of 1,000 images is half the work of their SVD. Where a kept
    component's variance is below 1e-6 of the largest, the squared spectrum would cost it
    precision, and the SVD of the centred data is used, as scikit-learn does.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
        float64, finite (validated by the caller).
    n_components : int or float
        How many components (1 <= k <= min(N, D)), or in (0, 1) the share of the variance
        they must exceed (as scikit-learn: the fewest components whose cumulated share is
        above it).

    Returns
    -------
    scores : ndarray of shape (n_samples, k)
    """
    n, d = x.shape
    centred = x - x.mean(axis=0)
    dual = n <= d
    gram = centred @ centred.T if dual else centred.T @ centred
    counted = isinstance(n_components, (int, np.integer))  # else a share of the variance
    if counted:  # only the k largest are needed
        k = int(n_components)
        values, vectors = scipy.linalg.eigh(gram, overwrite_a=True, check_finite=False, driver="evr",
                                            subset_by_index=[len(gram) - k, len(gram) - 1])
    else:
        values, vectors = scipy.linalg.eigh(gram, overwrite_a=True, check_finite=False, driver="evd")
    values, vectors = np.maximum(values[::-1], 0.0), vectors[:, ::-1]  # descending, as the SVD
    if not counted:
        share = np.cumsum(values / values.sum())
        k = int(np.searchsorted(share, n_components, side="right")) + 1
    if values[k - 1] < _EIGH_MIN_RATIO * values[0]:
        return _from_svd(centred, k)
    if dual:  # vectors are U: the scores are U S and the loadings' rows V^T = S^-1 U^T X
        scores = vectors[:, :k] * np.sqrt(values[:k])
        loadings = vectors[:, :k].T @ centred  # S V^T: the same signs and largest entries
    else:  # vectors are V
        loadings = vectors[:, :k].T
        scores = centred @ vectors[:, :k]
    return scores * _signs(loadings)


def _signs(loadings: np.ndarray) -> np.ndarray:
    """+1 or -1 per component (row): the sign of its largest loading in absolute value
    (scikit-learn's ``svd_flip(..., u_based_decision=False)``)."""
    largest = np.argmax(np.abs(loadings), axis=1)
    return np.sign(loadings[np.arange(len(loadings)), largest])


def _from_svd(centred: np.ndarray, k: int) -> np.ndarray:
    u, s, vt = scipy.linalg.svd(centred, full_matrices=False, overwrite_a=True, check_finite=False)
    return u[:, :k] * s[:k] * _signs(vt[:k])
