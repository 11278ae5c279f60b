"""PARC: Pairwise Annotation Representation Comparison."""

from __future__ import annotations

import numpy as np

from ..validation import check_features_labels, readable
from ._pca import principal_components
from ._registry import register


def stratified_subsample(codes: np.ndarray, max_samples: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded, class-stratified subsample of at most ``max_samples``."""
    if len(codes) <= max_samples:
        return np.arange(len(codes))
    from sklearn.model_selection import train_test_split  # here: sklearn costs every process ~0.5 s

    chosen, _ = train_test_split(np.arange(len(codes)), train_size=max_samples,
                                 stratify=codes, random_state=seed)
    return np.sort(chosen)


def _row_correlations(values: np.ndarray) -> np.ndarray:
    """Pearson correlation between rows (``np.corrcoef``), with 0 for a constant row."""
    centred = values - values.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1)
    centred /= np.where(norms > 0, norms, 1.0)[:, None]
    return centred @ centred.T


@register("parc")
def parc(features, labels, n_dims: int = 32, seed: int = 0, max_samples: int = 15_000) -> float:
    r"""PARC: Spearman correlation between the feature and label dissimilarity matrices, x 100.

    1. a seeded, class-stratified subsample of at most ``max_samples`` samples (the N x N
       matrices below are quadratic in N);
    2. PCA to ``n_dims`` dimensions when D > n_dims (exact PCA, scikit-learn's full-SVD PCA
       from the smaller eigenproblem, :func:`principal_components`; the SFDA/PED code uses a
       randomized approximation with one power iteration); with fewer samples than that, to
       N - 1 dimensions, the rank of the centred data (the reference fails there);
    3. standardise each feature (zero mean, unit variance; constant features left at 0);
    4. RDM_f = 1 - corrcoef(samples) and RDM_y = 1 - corrcoef(one-hot labels);
    5. score = 100 * Spearman(upper triangle of RDM_f, upper triangle of RDM_y).

    RDM_y takes two values, 0 for a same-class pair and a constant for a different-class
    pair, so the Spearman correlation is computed exactly from the average ranks of RDM_f
    and that binary indicator (no floating-point noise in the label matrix decides ties).

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    n_dims : int, default 32
    seed : int, default 0
        Seeds the subsample.
    max_samples : int, default 15000

    Returns
    -------
    score : float in [-100, 100]

    Raises
    ------
    ValueError
        Where there is no correlation to compute: no same-class or no different-class pair,
        or every pair equally dissimilar (constant features).

    References
    ----------
    Bolya et al., "Scalable Diverse Model Selection for Accessible Transfer Learning", NeurIPS 2021.
    """
    if not (isinstance(n_dims, (int, np.integer)) and n_dims >= 1):
        raise ValueError(f"n_dims must be a positive integer, got {readable(n_dims)}")
    if not (isinstance(max_samples, (int, np.integer)) and max_samples >= 2):
        raise ValueError(f"max_samples must be an integer >= 2, got {readable(max_samples)}")
    data = check_features_labels(features, labels)
    chosen = stratified_subsample(data.codes, int(max_samples), seed)
    x, codes = data.features[chosen], data.codes[chosen]
    kept = min(int(n_dims), len(x) - 1)
    if x.shape[1] > kept:
        x = principal_components(x, kept)
    std = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    upper = np.triu_indices(len(codes), k=1)
    dissimilarity = 1.0 - _row_correlations(x)[upper]
    different = (codes[upper[0]] != codes[upper[1]]).astype(float)
    share = different.mean()
    if share in (0.0, 1.0):
        raise ValueError("PARC needs both same-class and different-class pairs: "
                         "at least one class must have 2 or more samples")
    from scipy.stats import rankdata

    ranks = rankdata(dissimilarity)
    spread = ranks.std()
    if spread == 0:  # Spearman's correlation with a constant is undefined, not -inf
        raise ValueError("PARC needs features that tell samples apart: every pair of samples is "
                         "equally dissimilar (e.g. constant features)")
    # Pearson correlation of the ranks with a binary indicator, in closed form.
    covariance = (ranks * different).mean() - ranks.mean() * share
    correlation = covariance / (spread * np.sqrt(share * (1.0 - share)))
    return float(100.0 * correlation)
