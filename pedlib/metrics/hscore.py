"""H-score: how much of the feature covariance the class-conditional means explain."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .._stats import class_means
from ..validation import check_features_labels
from ._registry import register

_RCOND = 1e-15  # the reference's pinv cutoff


@register("hscore", maximum=lambda n_classes, n_samples, n_features: n_classes - 1)
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
    score : float, between 0 and C - 1
        Higher means the features are expected to transfer better. When the centred
        features' rank reaches N - 1 (D >= N - 1, e.g. 1280-d features of 720 images) the
        covariance is invertible on all the data and the score is exactly C - 1 for every
        model: it is *saturated* and says nothing (the scores table flags it; see
        :func:`hscore_shrinkage`).

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


@register("hscore_shrinkage", maximum=lambda n_classes, n_samples, n_features: n_classes - 1)
def hscore_shrinkage(features, labels) -> float:
    r"""Shrinkage-regularised H-score: ``tr(Sigma_alpha^-1 (1 - alpha) cov(E[f | y]))``.

    ``Sigma_alpha = (1 - alpha) Sigma + alpha (tr(Sigma) / D) I`` is the Ledoit-Wolf
    estimate of the feature covariance (``sklearn.covariance.LedoitWolf``: Sigma the
    maximum-likelihood covariance, alpha its optimal shrinkage), and cov(E[f | y]) =
    1/N sum_c n_c (mu_c - mu)(mu_c - mu)^T the between-class covariance, normalised like
    Sigma, so that the score stays below C - 1. (The transfer-learning library's
    ``regularized_h_score`` divides the between-class part by N - 1 instead, which scales every
    score of a target by N / (N - 1), the same ranking, and lets it exceed C - 1.) Shrinkage
    keeps the inverse well-conditioned when D approaches or exceeds N, where the plain
    H-score saturates at C - 1.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)

    Returns
    -------
    score : float, at least 0

    References
    ----------
    Ibrahim, Ponomareva & Mazumder, "Newer is not always better: Rethinking transferability
    metrics, their peculiarities, stability and performance", ECML-PKDD 2022 (arXiv 2110.06893).
    """
    from sklearn.covariance import LedoitWolf

    data = check_features_labels(features, labels)
    x = data.features
    n = len(x)
    estimate = LedoitWolf(assume_centered=False, store_precision=False).fit(x)
    alpha = float(estimate.shrinkage_)
    deviations = class_means(x, data.codes, data.counts) - x.mean(axis=0)  # (C, D)
    # Sigma_alpha is positive definite when alpha > 0; a pseudo-inverse (as in hscore) also
    # covers alpha = 0 on rank-deficient features (dead units).
    eigenvalues, eigenvectors = scipy.linalg.eigh(estimate.covariance_, overwrite_a=True, check_finite=False)
    keep = np.abs(eigenvalues) > _RCOND * np.abs(eigenvalues).max()
    projected = deviations @ eigenvectors[:, keep]
    quadratic = (projected**2 / eigenvalues[keep]).sum(axis=1)
    return float((1 - alpha) * (data.counts * quadratic).sum() / n)
