"""Potential Energy Decline (PED): simulate the class motion that fine-tuning would cause.

Each class of target features is a charged cluster; clusters that overlap repel each other
for a few time steps. The moved features are then scored with any feature-based metric.

Reference: Li et al., "Exploring Model Transferability through the Lens of Potential
Energy", ICCV 2023.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.spatial.distance

from . import metrics as _metrics
from .statistics import FeatureStatistics
from .validation import check_features_labels, check_reference, readable

__all__ = ["DeclineResult", "Motion", "Standardization", "decline", "motion", "standardization",
           "feature_statistics", "score", "DEFAULTS"]

#: PED's defaults, as in the paper's released evaluation code.
DEFAULTS: dict[str, float] = dict(time_step=0.1, exit_ratio=0.5, nsigma=0.6, constant=1.0,
                                  max_steps=6, eps=1e-3)


@dataclass(frozen=True)
class DeclineResult:
    """The outcome of :func:`decline`.

    Attributes
    ----------
    features : ndarray of shape (n_samples, n_features)
        The moved features, in the input's units (a new array).
    steps : int
        Number of steps applied (0 when no two classes overlap).
    changes : tuple of float
        The change (sum of |class displacement| over classes and standardised dimensions) of
        every step computed. The first ``steps`` entries were applied; a further entry is the
        step that fell to ``exit_ratio`` of the first and was not applied.
    class_means : ndarray of shape (steps + 1, n_classes, n_features)
        Class means before any step and after each applied step, in the input's units.
    classes : ndarray of shape (n_classes,)
        The label values, in the order of the class axis.
    """

    features: np.ndarray
    steps: int
    changes: tuple[float, ...]
    class_means: np.ndarray
    classes: np.ndarray


def _positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {readable(value)}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value}")
    return value


def repulsion_step(means: np.ndarray, radii: np.ndarray, *, time_step: float, nsigma: float,
                   constant: float) -> np.ndarray:
    """Displacement of every class mean for one PED step, shape (n_classes, n_features).

    For each pair a != b with d_ab = ||mu_a - mu_b||::

        overlap_ab = max(nsigma (r_a + r_b) - d_ab, 0)
        delta_ab   = min(1/2 time_step^2 constant overlap_ab, overlap_ab)
        move_a     = sum_b delta_ab (mu_a - mu_b) / d_ab

    A pair with coincident means (d_ab = 0) has no direction and exerts no force. Memory is
    O(C^2 + C D): the sum is ``(sum_b w_ab) mu_a - sum_b w_ab mu_b`` with w_ab = delta_ab / d_ab.
    """
    distances = scipy.spatial.distance.cdist(means, means)
    overlap = np.maximum(nsigma * (radii[:, None] + radii[None, :]) - distances, 0.0)
    np.fill_diagonal(overlap, 0.0)
    delta = np.minimum(0.5 * time_step**2 * constant * overlap, overlap)
    weights = np.divide(delta, distances, out=np.zeros_like(delta), where=distances > 0)
    return weights.sum(axis=1)[:, None] * means - weights @ means


@dataclass(frozen=True)
class Motion:
    """How PED moves each class, without moving any sample (:func:`motion`).

    Attributes
    ----------
    offsets : ndarray of shape (n_classes, n_features)
        Each class's total displacement in the input's units: the moved features are
        ``features + offsets[codes]``.
    steps, changes, class_means, classes
        As in :class:`DeclineResult`.
    """

    offsets: np.ndarray
    steps: int
    changes: tuple[float, ...]
    class_means: np.ndarray
    classes: np.ndarray


@dataclass(frozen=True)
class Standardization:
    """PED's standardisation: ``Z = (X - center) / max(spread, eps)``; from :func:`standardization`."""

    center: np.ndarray
    spread: np.ndarray


def standardization(reference, n_features: int) -> Standardization:
    """Mean and population std of a validated reference sample (compute once, reuse for every
    PED setting that uses this reference)."""
    reference = check_reference(reference, n_features)
    return Standardization(reference.mean(axis=0), reference.std(axis=0))


def _check_options(time_step, exit_ratio, nsigma, constant, max_steps, eps) -> dict:
    options = dict(time_step=_positive("time_step", time_step),
                   exit_ratio=_positive("exit_ratio", exit_ratio, allow_zero=True),
                   nsigma=_positive("nsigma", nsigma, allow_zero=True),
                   constant=_positive("constant", constant, allow_zero=True),
                   eps=_positive("eps", eps))
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {readable(max_steps)}")
    return dict(options, max_steps=int(max_steps))


def feature_statistics(features, labels, *, translations: int = 1) -> FeatureStatistics:
    """Validate features and labels for PED (at least 2 samples per class) and wrap them in
    the :class:`~pedlib.statistics.FeatureStatistics` that :func:`motion` and the metrics'
    statistics paths share."""
    data = check_features_labels(features, labels, min_per_class=2, requirement="PED")
    return FeatureStatistics(data, translations=translations)


def motion(statistics: FeatureStatistics, reference=None, *, time_step: float = 0.1,
           exit_ratio: float = 0.5, nsigma: float = 0.6, constant: float = 1.0,
           max_steps: int = 6, eps: float = 1e-3) -> Motion:
    """PED's class motion from precomputed statistics (:func:`feature_statistics`); see :func:`decline`.

    ``reference`` is the reference sample, its :func:`standardization` (computed once for
    many settings), or None (standardise with the features' own mean and std).

    Costs O(N D) for the class radii (one pass) plus O(steps C^2 D); the samples are never
    touched again.
    """
    options = _check_options(time_step, exit_ratio, nsigma, constant, max_steps, eps)
    if min(statistics.counts) < 2:
        raise ValueError("PED needs at least 2 samples per class to estimate a class radius")
    if reference is None:
        center, spread = statistics.column_mean_std
    else:
        if not isinstance(reference, Standardization):
            reference = standardization(reference, statistics.n_features)
        center, spread = reference.center, reference.spread
    scale = np.maximum(spread, options["eps"])

    radii = np.sqrt(statistics.class_scatter(scale**-2.0))  # first: one pass gives the class sums too
    raw_means = statistics.class_means
    means = (raw_means - center) / scale

    total = np.zeros_like(means)
    trajectory = [raw_means]
    changes: list[float] = []
    for step in range(options["max_steps"]):
        move = repulsion_step(means, radii, time_step=options["time_step"], nsigma=options["nsigma"],
                              constant=options["constant"])
        change = float(np.abs(move).sum())
        changes.append(change)
        if change == 0.0 or (step > 0 and change / changes[0] <= options["exit_ratio"]):
            break
        means = means + move
        total += move
        trajectory.append(raw_means + total * scale)
    return Motion(total * scale, len(trajectory) - 1, tuple(changes), np.stack(trajectory),
                  statistics.data.classes)


def decline(features, labels, reference=None, *, time_step: float = 0.1, exit_ratio: float = 0.5,
            nsigma: float = 0.6, constant: float = 1.0, max_steps: int = 6,
            eps: float = 1e-3) -> DeclineResult:
    r"""Move overlapping classes apart, as fine-tuning would, and return the moved features.

    1. Standardise with the reference sample G: Z = (X - mean(G)) / max(std(G), eps)
       (population std). Without a reference, X's own mean and std are used, which makes
       the simulation scale-free but is not the paper's setting.
    2. Per class c: mean mu_c and radius r_c = sqrt(sum_d Var(z_d | c)) (population variance).
    3. One step moves every class by :func:`repulsion_step`; every sample moves with its class,
       so radii never change. The change of a step is sum over classes and dimensions of
       |displacement|.
    4. The first step is always taken; a later step only while change / first change >
       ``exit_ratio``; at most ``max_steps`` steps. If nothing overlaps the features come back
       unchanged (``steps == 0``).
    5. Map back: X' = X + displacement[y] * max(std, eps), i.e. Z' std + mean.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
        At least 2 samples per class (a class radius needs a spread).
    reference : array-like of shape (n_reference, n_features), optional
        The same model's features on generic data (the paper: ImageNet val).
    time_step, exit_ratio, nsigma, constant, max_steps, eps
        See above; defaults are the paper's (``DEFAULTS``).

    Returns
    -------
    DeclineResult
        ``.features`` (moved), ``.steps``, ``.changes``, ``.class_means`` (trajectory).

    Notes
    -----
    Time O(N D + steps C^2 D), memory O(N D) for the output plus O(C^2 + C D): class statistics
    are computed once, since every sample of a class moves by the same vector. To score the
    moved features without building them, use :func:`score` (or :func:`motion` with a
    metric's statistics path).
    """
    stats = feature_statistics(features, labels)
    moved = motion(stats, reference, time_step=time_step, exit_ratio=exit_ratio, nsigma=nsigma,
                   constant=constant, max_steps=max_steps, eps=eps)
    features_moved = stats.translated(moved.offsets).features()  # no step: zero offsets, the identity
    if features_moved is stats.features:
        features_moved = features_moved.copy()
    return DeclineResult(features_moved, moved.steps, moved.changes, moved.class_means, moved.classes)


def score(features, labels, metric: str = "logme", reference=None, *,
          metric_options: dict | None = None, **ped_options) -> float:
    """Score features with ``metric`` after Potential Energy Decline.

    Works with every registered metric whose input is features (``metrics.available("features")``),
    including metrics a user registers.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
    labels : array-like of shape (n_samples,)
    metric : str, default "logme"
    reference : array-like of shape (n_reference, n_features), optional
    metric_options : dict, optional
        Keyword options for the metric (e.g. ``{"gaussian_type": "diagonal"}``).
    **ped_options
        Options of :func:`decline`.

    Returns
    -------
    score : float
    """
    entry = _metrics.info(metric)
    if entry.input != "features":
        raise ValueError(f"PED moves features, but metric {entry.name!r} scores source-class "
                         f"probabilities; use one of {', '.join(_metrics.available('features'))}")
    unknown = set(ped_options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown PED option(s) {sorted(unknown)}; valid: {sorted(DEFAULTS)}")
    if reference is None:
        warnings.warn("PED without a reference sample standardises with the target's own mean and std, "
                      "which is not the paper's setting (it uses the model's features on generic data, "
                      "e.g. ImageNet val); pass reference=...", UserWarning, stacklevel=3)
    stats = feature_statistics(features, labels)
    moved = motion(stats, reference, **ped_options)
    return score_translation(entry, stats.translated(moved.offsets), labels, metric_options)


def score_translation(entry, translation, labels, metric_options: dict | None = None) -> float:
    """Score translated features with a registered metric: from the statistics when the metric
    has a statistics path, else on the moved features."""
    if entry.from_statistics is not None:
        return entry.from_statistics(translation, **(metric_options or {}))
    return entry.function(translation.features(), labels, **(metric_options or {}))
