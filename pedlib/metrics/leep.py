"""LEEP and NCE: scores from the source model's class probabilities on the target data."""

from __future__ import annotations

import numpy as np

from ..blockwise import class_sums
from ..validation import check_probabilities_labels
from ._registry import register


@register("leep", input="probabilities")
def leep(source_probs, labels) -> float:
    r"""LEEP: log expected empirical prediction.

    With theta(x_i) the source model's probabilities over its K classes::

        P(y, z) = 1/N sum_{i: y_i = y} theta(x_i)_z,   P(y | z) = P(y, z) / P(z)
        LEEP    = 1/N sum_i log( sum_z P(y_i | z) theta(x_i)_z )

    Parameters
    ----------
    source_probs : array-like of shape (n_samples, n_source_classes)
        Rows are probabilities (non-negative, summing to 1 within 1e-3).
    labels : array-like of shape (n_samples,)

    Returns
    -------
    score : float, at most 0

    References
    ----------
    Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned
    Representations", ICML 2020.
    """
    data = check_probabilities_labels(source_probs, labels)
    theta = data.features
    joint = class_sums(theta, data.codes, data.n_classes) / len(theta)
    marginal = joint.sum(axis=0)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    expected = np.einsum("nk,nk->n", theta, conditional[data.codes])
    return float(np.log(expected).mean())


@register("nce", input="probabilities")
def nce(source_probs, labels) -> float:
    r"""NCE: negative conditional entropy of target labels given the source model's predictions.

    The source label of each sample is z_i = argmax theta(x_i) (ties: the first). With the
    empirical joint P(y, z)::

        NCE = -H(Y | Z) = sum_{y, z} P(y, z) log( P(y, z) / P(z) )

    Parameters
    ----------
    source_probs : array-like of shape (n_samples, n_source_classes)
    labels : array-like of shape (n_samples,)

    Returns
    -------
    score : float, at most 0

    References
    ----------
    Tran et al., "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019.
    """
    data = check_probabilities_labels(source_probs, labels)
    n, k = data.features.shape
    predicted = data.features.argmax(axis=1)
    joint = np.bincount(data.codes * k + predicted, minlength=data.n_classes * k)
    joint = joint.reshape(data.n_classes, k) / n
    marginal = joint.sum(axis=0)
    nonzero = joint > 0
    return float((joint[nonzero] * np.log(joint[nonzero] / np.broadcast_to(marginal, joint.shape)[nonzero])).sum())
