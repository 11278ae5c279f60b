"""LogME: the log marginal evidence of a Bayesian linear model on the features."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .._stats import class_sums
from ..validation import check_features_labels
from ._registry import register

_MAX_ITERATIONS = 11
_TOLERANCE = 1e-3
_EPSILON = 1e-5  # the reference's guard in the alpha/beta denominators


def _spectrum(features: np.ndarray, codes: np.ndarray, n_classes: int):
    """Squared singular values of ``features`` and the projections of each one-vs-rest target.

    Returns ``sigma`` (k,), ``x`` (k, n_classes) with ``x = U^T y`` for the k numerically
    non-zero singular directions, and ``k_reference``, how many singular values the reference
    code keeps (all min(N, D) of a thin SVD when N <= D, those above 1e-10 when N > D);
    works on the smaller of the two Gram matrices.
    """
    n, d = features.shape
    # (d, d) or (n, n): numpy uses syrk for a matrix times its own transpose.
    gram = features.T @ features if n >= d else features @ features.T
    sigma, vectors = scipy.linalg.eigh(gram, overwrite_a=True, check_finite=False, driver="evd")
    k_reference = n if n <= d else int((np.sqrt(np.maximum(sigma, 0.0)) > 1e-10).sum())
    keep = sigma > max(sigma.max(), 0.0) * max(n, d) * np.finfo(float).eps
    sigma, vectors = sigma[keep], vectors[:, keep]
    if n >= d:
        # vectors are V: U^T Y = S^-1 V^T F^T Y, and F^T Y is the (d, C) matrix of class sums.
        x = (vectors.T @ class_sums(features, codes, n_classes).T) / np.sqrt(sigma)[:, None]
    else:
        x = class_sums(vectors, codes, n_classes).T  # vectors are U: U^T Y
    return sigma, x, k_reference


def _evidence(features, labels, *, reference: bool) -> float:
    """The mean evidence of :func:`logme` (``reference=False``) or :func:`logme_reference`."""
    data = check_features_labels(features, labels)
    f = data.features
    n, d = f.shape
    sigma, x, k_reference = _spectrum(f, data.codes, data.n_classes)
    x2 = x**2  # (k, C)
    residual_x2 = data.counts - x2.sum(axis=0)  # ||y_c||^2 = n_c for a 0/1 target
    s = sigma[:, None]

    alpha = np.ones(data.n_classes)
    beta = np.ones(data.n_classes)
    m2 = np.zeros(data.n_classes)
    res2 = np.zeros(data.n_classes)
    active = np.ones(data.n_classes, dtype=bool)
    for _ in range(_MAX_ITERATIONS):
        t = alpha / beta
        gamma = (s / (s + t)).sum(axis=0)
        m2_new = (s * x2 / (t + s) ** 2).sum(axis=0)
        res2_new = (x2 / (1 + s / t) ** 2).sum(axis=0) + residual_x2
        alpha_new = gamma / (m2_new + _EPSILON)
        beta_new = (n - gamma) / (res2_new + _EPSILON)
        # Classes that converged earlier keep their values: each class iterates on its own.
        alpha = np.where(active, alpha_new, alpha)
        beta = np.where(active, beta_new, beta)
        m2 = np.where(active, m2_new, m2)
        res2 = np.where(active, res2_new, res2)
        active &= np.abs(alpha / beta - t) / t > _TOLERANCE
        if not active.any():
            break

    # Zero singular values contribute log(alpha + beta * 0) each: all D - k of them to the
    # true log-determinant, only the k_reference - k the reference's SVD returns to its sum.
    zeros = (k_reference if reference else d) - len(sigma)
    log_det = np.log(alpha + beta * s).sum(axis=0) + zeros * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - log_det / 2
                - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n
    return float(evidence.mean())


@register("logme_reference")
def logme_reference(features, labels) -> float:
    r"""LogME as the reference code computes it: the log-determinant over the kept singular
    values only.

    Identical to :func:`logme` (same fixed-point iteration, same evidence) except for one term:
    the reference sums ``log(alpha + beta sigma_i)`` over the k singular values its SVD
    returns (a thin SVD's min(N, D) when N <= D; those above 1e-10 when N > D) instead of
    over all D eigenvalues of ``A = alpha I + beta F^T F``. Whenever the features' rank r is
    below D, D - r eigenvalues of A equal alpha, and the reference leaves out up to D - r
    terms ``log(alpha)``::

        L_reference - L = (D - k_reference) / 2 * log(alpha) / N     (per class)

    so the two agree exactly when the features have full column rank (N > D and no
    dependent columns) and differ when N < D, or when some units are dead (constant zero).
    This is the evidence of the PED, SFDA and LogME repositories; :func:`logme` is the
    correct marginal likelihood.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)

    Returns
    -------
    score : float

    References
    ----------
    You et al., ICML 2021 (code: github.com/thuml/LogME, ``LogME._fit_fixed_point``).
    """
    return _evidence(features, labels, reference=True)


@register("logme")
def logme(features, labels) -> float:
    r"""LogME: average log maximum evidence of one-vs-rest Bayesian linear regressions.

    For each class c a 0/1 target y_c is regressed on the features F (N x D) with prior
    w ~ N(0, alpha^-1 I) and noise N(0, beta^-1). With F = U S V^T, sigma_i = s_i^2 and
    x = U^T y_c, the fixed-point iteration of You et al. (arXiv 2110.10545) starts at
    alpha = beta = 1 and repeats at most 11 times, stopping when |t' - t| / t <= 1e-3 for
    t = alpha / beta::

        gamma = sum_i sigma_i / (sigma_i + t)
        m2    = sum_i sigma_i x_i^2 / (t + sigma_i)^2
        res2  = sum_i x_i^2 / (1 + sigma_i / t)^2 + (||y||^2 - sum_i x_i^2)
        alpha = gamma / (m2 + 1e-5),   beta = (N - gamma) / (res2 + 1e-5)

    The evidence per sample, with the updated alpha, beta and the m2, res2 of the last
    iteration (as the reference code does), is::

        L = [D/2 log alpha + N/2 log beta - 1/2 log|A| - beta/2 res2 - alpha/2 m2
             - N/2 log 2 pi] / N,      A = alpha I_D + beta F^T F

    and the score is the mean of L over classes.

    ``log|A|`` sums over all D eigenvalues of A: ``sum_i log(alpha + beta sigma_i)`` over the
    non-zero singular values plus ``(D - k) log alpha`` for the D - k zero ones. The
    reference code drops the zeros, which is wrong when the features are rank-deficient
    (e.g. N < D); on full-rank features both agree. Singular values below the numerical
    rank tolerance (``sigma_max * max(N, D) * eps``) count as zero.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        Any hashable class labels; at least 2 classes. A single-sample class is allowed.

    Returns
    -------
    score : float
        Higher means the features are expected to transfer better.

    References
    ----------
    You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning", ICML 2021.
    You et al., "Ranking and Tuning Pre-trained Models: A New Paradigm for Exploiting Model
    Hubs", JMLR 2022 (arXiv 2110.10545).
    """
    return _evidence(features, labels, reference=False)
