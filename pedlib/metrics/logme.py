"""LogME: the log marginal evidence of a Bayesian linear model on the features.

The fixed-point iteration sees the features only through two things: the spectrum of the
Gram matrix and each class's weight on it. Two evaluators provide them:

* :class:`_Spectrum`: the eigendecomposition of ``F^T F`` (N > D) or ``F F^T`` (N <= D),
  the reference code's two branches;
* :class:`_LowRankUpdate`: ``F^T F = S_w + J J^T`` with the within-class scatter ``S_w``
  decomposed once and ``J = M^T diag(n)^1/2`` (D x C) for the class means M. A translation
  of every class (PED) changes only J, so each PED setting costs O(D C^2) per iteration
  instead of a new O(D^3) eigendecomposition (Woodbury identity, matrix determinant lemma).
"""

from __future__ import annotations

import numpy as np

from ..blockwise import class_sums, row_blocks
from ..statistics import FeatureStatistics, Translation
from ..validation import check_features_labels
from ._registry import register

_MAX_ITERATIONS = 11
_TOLERANCE = 1e-3
_EPSILON = 1e-5  # the reference's guard in the alpha/beta denominators


class _Spectrum:
    """LogME's terms from eigenvalues ``sigma`` (k,) of the Gram matrix and the squared
    projections ``p2`` (k, C) of each class's target on its eigenvectors, scaled so that
    ``p2 = sigma x^2`` with ``x = U^T y`` (``p = V^T F^T y`` in the primal form).

    With ``p2`` instead of ``x^2`` nothing is divided by a singular value, so a zero (or
    rounding-level) eigenvalue is harmless: its direction contributes nothing.
    """

    def __init__(self, sigma: np.ndarray, p2: np.ndarray, counts: np.ndarray, n_features: int):
        self.sigma, self.p2, self.counts, self.n_features = sigma, p2, counts, n_features

    def terms(self, t: np.ndarray, classes: np.ndarray):
        """gamma, m2, res2 (each (len(classes),)) at ``t = alpha / beta`` per class."""
        s = self.sigma[:, None]
        weighted = self.p2[:, classes] / (t + s) ** 2
        gamma = (s / (s + t)).sum(axis=0)
        m2 = weighted.sum(axis=0)
        # res2 = sum_i x_i^2 t^2/(t+s_i)^2 + (n_c - sum_i x_i^2) = n_c - sum_i p_i^2 (2t+s_i)/(t+s_i)^2
        res2 = self.counts[classes] - (weighted * (2 * t + s)).sum(axis=0)
        return gamma, m2, res2

    def log_det(self, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """``log det(alpha I_D + beta G)`` per class: the k eigenvalues plus D - k zeros."""
        zeros = self.n_features - len(self.sigma)
        return np.log(alpha + beta * self.sigma[:, None]).sum(axis=0) + zeros * np.log(alpha)


class _LowRankUpdate:
    """LogME's terms for ``G = S_w + J J^T`` from the eigendecomposition ``S_w = W diag(w) W^T``.

    With ``R = (diag(w) + t I)^-1``, ``Jh = W^T J``, ``Phi = Jh^T R Jh``, ``Psi = Jh^T R^2 Jh``
    and ``A = I + Phi`` (C x C, positive definite), for the class sum ``s_c = sqrt(n_c) J e_c``::

        (G + t I)^-1 = R - R Jh A^-1 Jh^T R                       (Woodbury)
        m2   = ||(G + t I)^-1 s_c||^2 = n_c g^T Psi g,   g = A^-1 e_c
        res2 = n_c - s_c^T z - t m2   = n_c (A^-1)_cc - t m2
        gamma = D - t tr((G + t I)^-1) = D - t (sum R - tr(A^-1 Psi))
        log det(G + t I) = sum log(w + t) + log det A               (determinant lemma)
    """

    # Bound on the (D, C^2) matrix of outer products jh_d jh_d^T kept in memory at once.
    _BLOCK_BYTES = 64 * 2**20

    def __init__(self, omega: np.ndarray, jhat: np.ndarray, counts: np.ndarray):
        self.omega, self.jhat, self.counts = omega, jhat, counts
        self.n_features, self.n_classes = jhat.shape
        self._upper = np.triu_indices(self.n_classes)  # Phi and Psi are symmetric: half is enough
        blocks = list(row_blocks(self.n_features, len(self._upper[0]), self._BLOCK_BYTES))
        # One block: build the outer products once for every call.
        self._outer = self._outer_products(blocks[0]) if len(blocks) == 1 else None
        self._blocks = blocks

    def _outer_products(self, rows: slice) -> np.ndarray:
        part = self.jhat[rows]
        return part[:, self._upper[0]] * part[:, self._upper[1]]

    def _matrices(self, t: np.ndarray):
        """For each t: sum R, inverse and log-determinant of A = I + Phi, and Psi.

        ``[Phi; Psi] = [R; R^2] @ outer`` is one matrix product over the outer products
        ``jh_d jh_d^T`` of the rows of ``Jh``: O(T D C^2) in BLAS-3.
        """
        c = self.n_classes
        r = 1.0 / (self.omega[None, :] + t[:, None])  # (T, D)
        weights = np.vstack([r, r * r])
        packed = np.zeros((len(weights), len(self._upper[0])))
        for rows in self._blocks:
            outer = self._outer if self._outer is not None else self._outer_products(rows)
            packed += weights[:, rows] @ outer
        both = np.empty((len(weights), c, c))
        both[:, self._upper[0], self._upper[1]] = packed
        both[:, self._upper[1], self._upper[0]] = packed
        phi, psi = both[: len(t)], both[len(t):]
        a = phi + np.eye(c)
        factor = np.linalg.cholesky(a)  # A is positive definite: I plus a Gram matrix
        log_det_a = 2 * np.log(np.diagonal(factor, axis1=1, axis2=2)).sum(axis=1)
        return r.sum(axis=1), np.linalg.inv(a), log_det_a, psi

    def terms(self, t: np.ndarray, classes: np.ndarray):
        total, inverse, _, psi = self._matrices(t)
        counts = self.counts[classes]
        index = np.arange(len(classes))
        g = inverse[index, :, classes]  # (T, C): column c of A^-1
        m2 = counts * np.einsum("ti,tij,tj->t", g, psi, g)
        res2 = counts * inverse[index, classes, classes] - t * m2
        gamma = self.n_features - t * (total - np.einsum("tij,tji->t", inverse, psi))
        return gamma, m2, res2

    def log_det(self, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
        t = alpha / beta
        _, _, log_det_a, _ = self._matrices(t)
        return (self.n_features * np.log(beta) + np.log(self.omega[:, None] + t).sum(axis=0)
                + log_det_a)


def _low_rank_pays(base: FeatureStatistics) -> bool:
    """Whether the rank-C evaluator beats one eigendecomposition per setting over all of
    ``base.translations`` settings: about 10 C^3 D flops a setting (a few fixed-point
    iterations of two (C, D) x (D, C^2 / 2) products) plus one 6 D^3 decomposition of S_w,
    against 6 min(N, D)^3 a setting (the Gram matrix or, when N <= D, the kernel). It does
    for the score stage's sixteen-odd settings unless C^3 approaches D^2 (e.g. 397 classes in
    2,048 dimensions) or N is well below D (100 samples of 1,280-d features)."""
    c, d, settings = base.n_classes, base.n_features, base.translations
    per_setting = 6 * min(base.n_samples, d) ** 3
    return settings > 1 and settings * 10 * c**3 * d + 6 * d**3 < settings * per_setting


def _evaluator(translation: Translation):
    """The cheapest exact evaluator for these statistics (see the module docstring)."""
    base = translation.base
    if not translation.identity and _low_rank_pays(base):
        omega, vectors = base.within_scatter_eigh
        jhat = vectors.T @ (translation.class_means.T * np.sqrt(base.counts))
        return _LowRankUpdate(omega, jhat, base.counts)
    sigma, vectors = translation.gram_eigh
    if base.primal:  # vectors are V: p = V^T F^T y, the class sums projected
        p2 = (vectors.T @ translation.class_sums.T) ** 2
    else:  # vectors are U: x = U^T y, and p^2 = sigma x^2
        p2 = sigma[:, None] * class_sums(vectors, base.codes, base.n_classes).T ** 2
    return _Spectrum(sigma, p2, base.counts, base.n_features)


def _fixed_point(translation: Translation):
    """alpha, beta, m2, res2 and ``log det(alpha I_D + beta G)`` per class, at the end of the
    fixed-point iteration (:func:`logme`)."""
    base = translation.base
    n, n_classes = base.n_samples, base.n_classes
    evaluator = _evaluator(translation)

    alpha, beta = np.ones(n_classes), np.ones(n_classes)
    m2, res2 = np.zeros(n_classes), np.zeros(n_classes)
    active = np.arange(n_classes)
    for _ in range(_MAX_ITERATIONS):
        t = alpha[active] / beta[active]
        gamma, m2[active], res2[active] = evaluator.terms(t, active)
        alpha[active] = gamma / (m2[active] + _EPSILON)
        beta[active] = (n - gamma) / (res2[active] + _EPSILON)
        # Each class iterates on its own and keeps the values of its last iteration.
        active = active[np.abs(alpha[active] / beta[active] - t) / t > _TOLERANCE]
        if not len(active):
            break
    return alpha, beta, m2, res2, evaluator.log_det(alpha, beta)


def _evidence(statistics: FeatureStatistics | Translation, *, reference: bool) -> float:
    """The mean evidence of :func:`logme` (``reference=False``) or :func:`logme_reference`;
    both read one fixed point per translation."""
    translation = statistics if isinstance(statistics, Translation) else statistics.translated(None)
    n, d = translation.base.n_samples, translation.base.n_features
    alpha, beta, m2, res2, log_det = translation.derived("logme", lambda: _fixed_point(translation))
    if reference and n < d:
        # The reference's thin SVD of F (N <= D) returns N singular values: its log-determinant
        # is log det(alpha I_N + beta F F^T), without the D - N eigenvalues alpha of A.
        log_det = log_det - (d - n) * np.log(alpha)
    evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - log_det / 2
                - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi)) / n
    return float(evidence.mean())


def _statistics(features, labels) -> FeatureStatistics:
    return FeatureStatistics(check_features_labels(features, labels))


def _logme_from_statistics(statistics) -> float:
    return _evidence(statistics, reference=False)


def _logme_reference_from_statistics(statistics) -> float:
    return _evidence(statistics, reference=True)


@register("logme_reference", from_statistics=_logme_reference_from_statistics)
def logme_reference(features, labels) -> float:
    r"""LogME as the reference code computes it, branch for branch.

    The fixed-point LogME shared by the LogME, SFDA and PED repositories
    (``LogME._fit_fixed_point``) takes one of two branches:

    * **N > D**: the SVD of the D x D matrix ``F^T F``, keeping the directions whose singular
      value of F (the square root of the Gram's eigenvalue) exceeds 1e-10. The Gram's zero
      eigenvalues (dead units, dependent columns) come out of a blocked LAPACK SVD at rounding
      level, about 1e-13 of the largest, so their square roots (about 3e-7 of the largest
      singular value) pass the cut-off: in practice all D are kept and the score equals
      :func:`logme` (to rounding). This branch is :func:`logme` exactly.
    * **N <= D**: the thin SVD of F itself, whose min(N, D) = N singular values are all it
      sums ``log(alpha + beta sigma_i)`` over: the D - N eigenvalues ``alpha`` of
      ``A = alpha I + beta F^T F`` are left out, so::

        L_reference - L = (D - N) / 2 * log(alpha) / N     (per class)

      This is the reference's bias on rank-deficient features; it grows with D / N.

    No rank tolerance is involved in either branch: every eigenvalue is used, so the score
    does not move with the BLAS thread count. (One artefact of LAPACK is not reproduced: for
    a small Gram with exactly-zero rows, e.g. a 10 x 10 one, an unblocked SVD can return
    exact zeros, which the reference's cut-off then drops.)

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
    return _evidence(_statistics(features, labels), reference=True)


@register("logme", from_statistics=_logme_from_statistics)
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
    eigenvalues of the smaller Gram matrix (``F^T F`` when N > D, ``F F^T`` otherwise) plus
    ``(D - N) log alpha`` when N < D. The reference code leaves those D - N terms out
    (:func:`logme_reference`), which is wrong when N < D. No eigenvalue is dropped under a
    rank tolerance; the terms are computed as ``p_i^2 = sigma_i x_i^2`` (the class sums
    projected on the eigenvectors), so a zero eigenvalue contributes nothing and nothing is
    divided by it.

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
    return _evidence(_statistics(features, labels), reference=False)
