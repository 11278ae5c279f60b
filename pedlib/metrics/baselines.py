"""Baselines every transferability metric should beat: k-NN accuracy and the feature dimension.

Recent benchmarks find that simple heuristics often rank pretrained models as well as the
published metrics (Sorkhei et al., "k-NN as a Simple and Effective Estimator of
Transferability", TMLR 2025; "Back to the Basics on Predicting Transfer Performance", 2024).
They are registered like metrics (``kind="baseline"``), so the pipeline scores and evaluates
them beside every metric, plain and with PED.
"""

from __future__ import annotations

import numpy as np

from ..blockwise import row_blocks
from ..validation import check_features_labels, readable
from ._registry import register

__all__ = ["knn", "dim"]


@register("knn", kind="baseline", maximum=lambda n_classes, n_samples, n_features: 1.0)
def knn(features, labels, *, k: int = 20, temperature: float = 0.07) -> float:
    r"""Leave-one-out accuracy of a weighted k-nearest-neighbour classifier on the features.

    Each sample is classified by its ``k`` nearest *other* samples under cosine similarity
    (features L2-normalised; ``k`` is capped at N - 1), each neighbour voting for its class
    with weight ``exp(similarity / temperature)``: the k-NN evaluation of self-supervised
    feature quality (k = 20, temperature 0.07, as in DINO, Caron et al. 2021), used as a
    transferability estimate by Sorkhei et al. A vote tie goes to the smaller class code.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    k : int, default 20
    temperature : float, default 0.07

    Returns
    -------
    score : float in [0, 1]
        The share of samples whose neighbours vote for their own class.

    Notes
    -----
    Similarities are computed in row blocks, so memory is O(block x N), not O(N^2).
    """
    data = check_features_labels(features, labels)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {readable(k)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {readable(temperature)}")
    x = data.features
    n = len(x)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    k = min(int(k), n - 1)
    correct = 0
    for rows in row_blocks(n, n):
        similarity = unit[rows] @ unit.T  # (block, N)
        block = np.arange(rows.start, rows.stop)
        similarity[np.arange(len(block)), block] = -np.inf  # leave each sample out
        neighbours = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.exp(np.take_along_axis(similarity, neighbours, axis=1) / temperature
                         - 1.0 / temperature)  # shifted by the largest possible similarity: no overflow
        cells = np.arange(len(block))[:, None] * data.n_classes + data.codes[neighbours]
        votes = np.bincount(cells.ravel(), weights.ravel(), minlength=len(block) * data.n_classes)
        votes = votes.reshape(len(block), data.n_classes)
        correct += int((votes.argmax(axis=1) == data.codes[block]).sum())
    return correct / n


@register("dim", kind="baseline")
def dim(features, labels) -> float:
    """The feature dimension D: "bigger embeddings transfer better". PED cannot change it.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)

    Returns
    -------
    score : float
    """
    return float(check_features_labels(features, labels).features.shape[1])
