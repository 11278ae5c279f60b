"""H-score: how much of the feature covariance the class-conditional means explain."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from ..blockwise import class_means
from ..statistics import eigh
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

    When N <= D the score is computed from the eigendecomposition of the centred samples'
    N x N kernel, without forming the D x D covariance (the same value; alpha as
    scikit-learn computes it, from either Gram matrix).

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
    data = check_features_labels(features, labels)
    x = data.features
    n, d = x.shape
    centred = x - x.mean(axis=0)
    squared_norms = np.einsum("ij,ij->i", centred, centred)
    # The centred data's kernel (N x N) when N <= D, else its scatter (D x D): the same
    # non-zero spectrum, n times that of the maximum-likelihood covariance Sigma.
    dual = n <= d
    gram = centred @ centred.T if dual else centred.T @ centred
    alpha, mu = _ledoit_wolf(squared_norms, gram, n, d)
    if dual and alpha > 0:
        # The kernel X X^T = U diag(s^2) U^T gives Sigma's eigenvalues lambda_k = s_k^2 / n on
        # the directions v_k = X^T u_k / s_k; Sigma_alpha has (1 - alpha) lambda_k + alpha mu
        # there and alpha mu off the data's span, where the class deviations (combinations of
        # the centred samples) have no part. The deviation of class c is X^T a_c (a_c: 1/n_c
        # on its samples), so its projection on v_k is a_c^T X X^T u_k / s_k = s_k (a_c . u_k),
        # squared n lambda_k (a_c . u_k)^2: nothing is divided by a singular value, and a
        # direction of zero variance contributes nothing.
        values, vectors = eigh(gram, overwrite=True)  # clipped at 0: a Gram matrix's spectrum
        variances = values / n
        shrunk = (1 - alpha) * variances + alpha * mu
        keep = shrunk > _RCOND * shrunk.max()
        projections = class_means(vectors[:, keep], data.codes, data.counts)  # (C, k): a_c . u_k
        quadratic = (n * variances[keep] * projections**2 / shrunk[keep]).sum(axis=1)
    else:
        # Sigma_alpha is positive definite when alpha > 0; a pseudo-inverse (as in hscore) also
        # covers alpha = 0 on rank-deficient features (dead units).
        if dual:
            gram = centred.T @ centred
        covariance = (1 - alpha) * (gram / n) + alpha * mu * np.eye(d)
        eigenvalues, eigenvectors = scipy.linalg.eigh(covariance, overwrite_a=True, check_finite=False)
        keep = np.abs(eigenvalues) > _RCOND * np.abs(eigenvalues).max()
        deviations = class_means(centred, data.codes, data.counts)  # (C, D): mu_c - mu
        projected = deviations @ eigenvectors[:, keep]
        quadratic = (projected**2 / eigenvalues[keep]).sum(axis=1)
    return float((1 - alpha) * (data.counts * quadratic).sum() / n)


def _ledoit_wolf(squared_norms: np.ndarray, gram: np.ndarray, n: int, d: int) -> tuple[float, float]:
    """Ledoit-Wolf's shrinkage alpha and target scale mu = tr(Sigma) / D, as
    ``sklearn.covariance.ledoit_wolf_shrinkage`` computes them (0 for one feature), from
    the centred samples' squared norms (N,) and either Gram matrix of the centred data.

    scikit-learn sums the entries of ``(X^2)^T X^2`` and of ``(X^T X)^2``, two D x D products;
    the first is ``sum_i ||x_i||^4``, the second the squared Frobenius norm of either Gram
    matrix (the same non-zero spectrum)."""
    if d == 1:
        return 0.0, float(squared_norms.sum() / n)
    mu = squared_norms.sum() / n / d
    beta_ = (squared_norms**2).sum()
    delta_ = np.einsum("ij,ij->", gram, gram) / n**2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * (mu * d) + d * mu**2) / d
    beta = min(beta, delta)
    return (0.0 if beta == 0 else float(beta / delta)), float(mu)
