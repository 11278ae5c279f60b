"""SFDA: Self-challenging Fisher Discriminant Analysis."""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import scipy.linalg
import scipy.special

from ..blockwise import BlockBuffer, class_sums, gather, row_blocks, within_class_gram
from ..validation import check_features_labels
from ._registry import register

_POWER_ITERATIONS = 3

Blocks = Callable[[], Iterator[tuple[slice, np.ndarray]]]


def largest_eigenvalue_estimate(matrix: np.ndarray, iterations: int = _POWER_ITERATIONS) -> float:
    """The reference's power-iteration estimate of the largest eigenvalue of a symmetric matrix.

    Starts from ``x = A 1``; each iteration sets ``y = A x / ||A x||`` and ``x = A y / ||A y||``;
    returns ``x^T A y`` of the last two normalised iterates. A zero matrix gives 0.
    """
    x = matrix.sum(axis=1)
    y = x
    for _ in range(iterations):
        ax = matrix @ x
        norm = np.linalg.norm(ax)
        if norm == 0:
            return 0.0
        y = ax / norm
        ay = matrix @ y
        x = ay / np.linalg.norm(ay)
    return float(x @ matrix @ y)


def _shrink(scatter: np.ndarray, shrinkage: float) -> np.ndarray:
    """``(1 - lambda) S + lambda * trace(S) / D * I`` (a new array)."""
    d = scatter.shape[0]
    shrunk = (1.0 - shrinkage) * scatter
    shrunk.flat[:: d + 1] += shrinkage * np.trace(scatter) / d
    return shrunk


def _fit_discriminant(blocks: Blocks, codes: np.ndarray, counts: np.ndarray, n_features: int,
                      shrinkage: float | None):
    """Fit the regularised Fisher discriminant on features streamed in row blocks.

    Returns (coef (C, D), intercept (C,), class means (C, D), shrinkage).
    """
    n, n_classes = len(codes), len(counts)
    sums = np.zeros((n_classes, n_features))
    for rows, block in blocks():
        sums += class_sums(block, codes[rows], n_classes)
    means = sums / counts[:, None]
    within = within_class_gram(blocks(), codes, means, n)
    within /= n  # = sum_c prior_c cov_c (population covariances)
    if np.trace(within) <= 0:
        raise ValueError("features have no within-class variation (every class is a single point); "
                         "SFDA's Fisher discriminant is undefined")
    if shrinkage is None:
        shrinkage = max(np.exp(-5.0 * largest_eigenvalue_estimate(within)), 1e-10)
    within_shrunk = _shrink(within, shrinkage)
    # With all D generalised eigenvectors V of (Sb, Sw_shrunk), V^T Sw_shrunk V = I, hence
    # V V^T = Sw_shrunk^-1 and coef = means V V^T = means Sw_shrunk^-1: one Cholesky solve.
    factor = scipy.linalg.cho_factor(within_shrunk, overwrite_a=True, check_finite=False)
    coef = scipy.linalg.cho_solve(factor, means.T, check_finite=False).T
    intercept = -0.5 * np.einsum("cd,cd->c", means, coef) + np.log(counts / n)
    return coef, intercept, means, shrinkage


def _decision_scores(blocks: Blocks, n_samples: int, coef: np.ndarray, intercept: np.ndarray):
    scores = np.empty((n_samples, len(intercept)))
    for rows, block in blocks():
        scores[rows] = block @ coef.T + intercept
    return scores


@register("sfda", maximum=lambda n_classes, n_samples, n_features: 1.0)
def sfda(features, labels) -> float:
    r"""SFDA: mean probability of the true class under a self-challenged regularised Fisher LDA.

    With priors pi_c = n_c / N, within scatter S_w = sum_c pi_c Cov_c (population covariance),
    and lambda = max(exp(-5 lambda_max(S_w)), 1e-10), where lambda_max is the reference's
    3-step power-iteration estimate (:func:`largest_eigenvalue_estimate`):

    1. shrink S = (1 - lambda) S + lambda tr(S)/D I for S_w and the total covariance S_t;
       S_b = S_t,shrunk - S_w,shrunk; V = all D solutions of S_b v = e S_w,shrunk v;
    2. LDA scores s(x) = x coef^T + b with coef = M V V^T (M the class means) and
       b_c = -1/2 m_c . coef_c + log pi_c; p = softmax(softmax(s)) (softmax applied twice);
    3. ConfMix: each x of class c becomes p_c(x) x + (1 - p_c(x)) mbar_c, with mbar_c the mean
       of the other classes' means;
    4. refit steps 1-2 on the mixed features with the same lambda and return the mean over
       samples of softmax(s)[true class] (one softmax, as the reference's ``predict_proba``).

    Because all D eigenvectors are kept, V V^T = S_w,shrunk^-1 exactly (V is
    S_w,shrunk-orthonormal), so coef = M S_w,shrunk^-1 is computed with one Cholesky solve;
    S_b then cancels out of the score. This is the reference's result, faster and more
    accurate than an explicit generalised eigendecomposition. The mixed features are formed
    block by block and never held whole. A class with one sample contributes no
    within-class scatter.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)

    Returns
    -------
    score : float in (0, 1]
        Higher means the features are expected to transfer better.

    References
    ----------
    Shao et al., "Not All Models Are Equal: Predicting Model Transferability in a
    Self-challenging Fisher Space", ECCV 2022.
    """
    data = check_features_labels(features, labels)
    x, codes, counts = data.features, data.codes, data.counts
    n, d = x.shape
    rows_of = lambda: ((rows, x[rows]) for rows in row_blocks(n, d))  # noqa: E731

    coef, intercept, means, shrinkage = _fit_discriminant(rows_of, codes, counts, d, None)
    scores = x @ coef.T + intercept
    probabilities = scipy.special.softmax(scipy.special.softmax(scores, axis=1), axis=1)
    p_true = probabilities[np.arange(n), codes]
    other_means = (means.sum(axis=0) - means) / (data.n_classes - 1)

    towards_buffer, mixed_buffer = BlockBuffer(n, d), BlockBuffer(n, d)

    def mixed_blocks():
        # p x + (1 - p) mbar as p (x - mbar) + mbar, in reused buffers: valid until the next block.
        for rows in row_blocks(n, d):
            towards = gather(other_means, codes[rows], towards_buffer.view(rows))
            mixed = np.subtract(x[rows], towards, out=mixed_buffer.view(rows))
            mixed *= p_true[rows, None]
            mixed += towards
            yield rows, mixed

    coef, intercept, _, _ = _fit_discriminant(mixed_blocks, codes, counts, d, shrinkage)
    probabilities = scipy.special.softmax(_decision_scores(mixed_blocks, n, coef, intercept), axis=1)
    return float(probabilities[np.arange(n), codes].mean())
