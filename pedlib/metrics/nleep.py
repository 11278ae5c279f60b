"""N-LEEP: LEEP with a Gaussian mixture on PCA-reduced features as the pseudo source label."""

from __future__ import annotations

import numpy as np

from ..blockwise import class_sums
from ..validation import check_features_labels, readable
from ._pca import principal_components
from ._registry import register


def _mixture_size(n_samples: int, class_counts, n_features: int, component_ratio: int = 5, **options):
    needed = int(component_ratio) * len(class_counts)
    if n_samples < needed:
        return (f"N-LEEP fits component_ratio x classes = {needed} mixture components and needs as many "
                f"samples, got {n_samples}; use more train images or metric_options.nleep.component_ratio "
                f"<= {n_samples // len(class_counts)}")
    return None


@register("nleep", requires=_mixture_size, maximum=lambda n_classes, n_samples, n_features: 1.0)
def nleep(features, labels, component_ratio: int = 5, seed: int = 0) -> float:
    r"""N-LEEP: expected empirical prediction through a Gaussian mixture's components.

    1. PCA keeping 80% of the variance (exact: :func:`principal_components`, scikit-learn's
       full-SVD PCA from the smaller eigenproblem);
    2. a full-covariance Gaussian mixture with K = component_ratio * C components, fitted with
       ``random_state=seed``; its posteriors P(z | x_i);
    3. P(y, z) = 1/N sum_{i: y_i = y} P(z | x_i), P(y | z) = P(y, z) / P(z) (0 for an unused
       component with P(z) = 0, where the reference would divide by zero);
    4. score = 1/N sum_i sum_z P(y_i | z) P(z | x_i).

    As in the reference (PED and SFDA code), the score averages the expected empirical
    prediction itself, without LEEP's logarithm.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    component_ratio : int, default 5
        Mixture components per class (the PED code uses 1 for food and pets).
    seed : int, default 0

    Returns
    -------
    score : float in (0, 1]

    References
    ----------
    Li et al., "Ranking Neural Checkpoints", CVPR 2021.
    """
    if not (isinstance(component_ratio, (int, np.integer)) and component_ratio >= 1):
        raise ValueError(f"component_ratio must be a positive integer, got {readable(component_ratio)}")
    data = check_features_labels(features, labels)
    n = len(data.features)
    n_components = int(component_ratio) * data.n_classes
    if n_components > n:
        raise ValueError(f"N-LEEP needs at least component_ratio * n_classes = {n_components} samples; "
                         f"got {n}. Lower component_ratio")
    from sklearn.mixture import GaussianMixture  # here: importing sklearn costs every process ~0.5 s

    reduced = principal_components(data.features, 0.8)
    mixture = GaussianMixture(n_components=n_components, random_state=seed).fit(reduced)
    posteriors = mixture.predict_proba(reduced)  # P(z | x), (N, K)
    joint = class_sums(posteriors, data.codes, data.n_classes) / n  # P(y, z), (C, K)
    marginal = joint.sum(axis=0)
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    expected = np.einsum("nk,nk->n", posteriors, conditional[data.codes])
    return float(expected.mean())
