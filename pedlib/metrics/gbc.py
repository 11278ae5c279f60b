"""GBC: Gaussian Bhattacharyya Coefficient between per-class Gaussians."""

from __future__ import annotations

import numpy as np
import scipy.spatial.distance

from ..blockwise import row_blocks
from ..statistics import FeatureStatistics
from ..validation import check_features_labels
from ._registry import register, two_per_class

_VARIANCE_FLOOR = 1e-4


def bhattacharyya_distances(means: np.ndarray, variances: np.ndarray,
                            gaussian_type: str = "spherical") -> np.ndarray:
    """Pairwise Bhattacharyya distances between diagonal or spherical Gaussians, (C, C).

    ``variances`` are per-class, per-feature (C, D). For ``"spherical"`` each class uses the
    mean of its variances and, as the reference implementation, the log term is taken of
    the scalar variances without multiplying by D.
    """
    if gaussian_type == "spherical":
        v = variances.mean(axis=1)
        average = 0.5 * (v[:, None] + v[None, :])
        squared = scipy.spatial.distance.cdist(means, means, "sqeuclidean")
        log_v = np.log(v)
        return 0.125 * squared / average + 0.5 * (
            np.log(average) - 0.5 * (log_v[:, None] + log_v[None, :]))
    if gaussian_type == "diagonal":
        n_classes, n_features = means.shape
        log_det = np.log(variances).sum(axis=1)
        distances = np.empty((n_classes, n_classes))
        # Blocks of rows keep the (block, C, D) temporaries small: memory O(C * D), not O(C^2 D).
        for rows in row_blocks(n_classes, n_classes * n_features):
            average = 0.5 * (variances[rows, None, :] + variances[None, :, :])
            difference = means[rows, None, :] - means[None, :, :]
            distances[rows] = 0.125 * (difference**2 / average).sum(axis=2) + 0.5 * (
                np.log(average).sum(axis=2) - 0.5 * (log_det[rows, None] + log_det[None, :]))
        return distances
    raise ValueError(f"gaussian_type must be 'spherical' or 'diagonal', got {gaussian_type!r}")


def _gbc_from_statistics(statistics, gaussian_type: str = "spherical") -> float:
    """GBC from class means and variances (a translation moves the means only)."""
    if gaussian_type not in ("spherical", "diagonal"):
        raise ValueError(f"gaussian_type must be 'spherical' or 'diagonal', got {gaussian_type!r}")
    if min(statistics.base.counts) < 2:
        raise ValueError("GBC needs at least 2 samples per class to estimate its spread")
    variances = np.maximum(statistics.class_variances, _VARIANCE_FLOOR)
    coefficients = np.exp(-bhattacharyya_distances(statistics.class_means, variances, gaussian_type))
    np.fill_diagonal(coefficients, 0.0)
    return float(-coefficients.sum())


@register("gbc", requires=two_per_class, from_statistics=_gbc_from_statistics)
def gbc(features, labels, gaussian_type: str = "spherical") -> float:
    r"""GBC: minus the summed Bhattacharyya coefficients between all pairs of class Gaussians.

    Each class c is a Gaussian with mean mu_c and per-feature population variance
    var_c = max(Var(x_d | c), 1e-4). The Bhattacharyya distance between classes i and j,
    with sigma = (var_i + var_j) / 2, is::

        BD_ij = 1/8 sum_d (mu_i - mu_j)_d^2 / sigma_d + 1/2 ln( det(sigma) / sqrt(det var_i det var_j) )

    For ``"spherical"`` the variances are replaced by their mean over features (a scalar per
    class) and, as in the reference implementation (google-research ``stable_transfer``),
    the log term uses those scalars directly, without the factor D a true spherical
    determinant would carry. The score is ``-sum_{i != j} exp(-BD_ij)`` over ordered pairs.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        At least 2 samples per class (a variance needs two).
    gaussian_type : {"spherical", "diagonal"}

    Returns
    -------
    score : float, at most 0
        Higher (closer to 0) means better separated classes.

    References
    ----------
    Pandy et al., "Transferability Estimation using Bhattacharyya Class Separability", CVPR 2022.
    """
    if gaussian_type not in ("spherical", "diagonal"):
        raise ValueError(f"gaussian_type must be 'spherical' or 'diagonal', got {gaussian_type!r}")
    data = check_features_labels(features, labels, min_per_class=2, requirement="GBC")
    return _gbc_from_statistics(FeatureStatistics(data).translated(None), gaussian_type)
