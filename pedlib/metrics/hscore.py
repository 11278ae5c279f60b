"""H-score: how much of the feature covariance the class-conditional means explain."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .._stats import class_means
from ..validation import check_features_labels
from ._registry import register

_RCOND = 1e-15  # the reference's pinv cutoff


@register("hscore")
def hscore(features, labels) -> float:
    r"""H-score: ``tr(cov(f)^+ cov(E[f | y]))``.

    cov(f) is the sample covariance (ddof=1) of the features; E[f | y] replaces each sample by
    its class mean, so cov(E[f | y]) = 1/(N-1) sum_c n_c (mu_c - mu)(mu_c - mu)^T. The
    pseudo-inverse drops eigenvalues below 1e-15 times the largest (as ``np.linalg.pinv``
    with ``rcond=1e-15`` in the reference code).

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)

    Returns
    -------
    score : float, at least 0
        Higher means the features are expected to transfer better.

    References
    ----------
    Bao et al., "An Information-Theoretic Approach to Transferability in Task Transfer
    Learning", ICIP 2019.
    """
    data = check_features_labels(features, labels)
    x = data.features
    n = len(x)
    mean = x.mean(axis=0)
    centred = x - mean
    covariance = centred.T @ centred / (n - 1)
    del centred
    eigenvalues, eigenvectors = scipy.linalg.eigh(covariance, overwrite_a=True, check_finite=False)
    keep = np.abs(eigenvalues) > _RCOND * np.abs(eigenvalues).max()
    deviations = (class_means(x, data.codes, data.counts) - mean) @ eigenvectors[:, keep]
    weighted = deviations**2 / eigenvalues[keep]
    return float((data.counts[:, None] * weighted).sum() / (n - 1))
