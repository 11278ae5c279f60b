"""TransRate: mutual information between features and labels via coding rates."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..validation import check_features_labels, readable
from ._registry import register


def coding_rate(z: np.ndarray, eps: float) -> float:
    """``1/2 log det(I_D + 1/(n eps) Z^T Z)`` for Z of shape (n, D).

    Uses the smaller Gram matrix (Sylvester's identity: det(I + A^T A) = det(I + A A^T)).
    """
    n, d = z.shape
    gram = z.T @ z if d <= n else z @ z.T
    gram /= n * eps
    gram.flat[:: gram.shape[0] + 1] += 1.0
    factor = scipy.linalg.cholesky(gram, check_finite=False)
    return float(np.log(np.diag(factor)).sum())  # 1/2 log det = sum log diag(chol)


@register("transrate")
def transrate(features, labels, eps: float = 1e-4) -> float:
    r"""TransRate: ``R(Z, eps) - 1/C sum_c R(Z_c, eps)``.

    Z is the features centred on their overall mean and Z_c the rows of class c (not
    re-centred); the coding rate is ``R(Z, eps) = 1/2 log det(I + 1/(n eps) Z^T Z)`` with n the
    number of rows of Z. Classes are averaged with equal weight, as in the authors' code.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    eps : float, default 1e-4
        Distortion.

    Returns
    -------
    score : float
        Higher means the features are expected to transfer better.

    References
    ----------
    Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022.
    """
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {readable(eps)}")
    data = check_features_labels(features, labels)
    z = data.features - data.features.mean(axis=0)
    order = np.argsort(data.codes, kind="stable")
    bounds = np.cumsum(data.counts)[:-1]
    per_class = [coding_rate(block, eps) for block in np.split(z[order], bounds)]
    return coding_rate(z, eps) - float(np.mean(per_class))
