"""Potential Energy Decline (PED): simulate the class motion that fine-tuning would cause.

Each class of target features is a charged cluster; clusters that overlap repel each other
for a few time steps. The moved features are then scored with any feature-based metric.

Reference: Li et al., "Exploring Model Transferability through the Lens of Potential
Energy", ICCV 2023.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.spatial.distance

from . import metrics as _metrics
from ._stats import add_class_offsets, class_means, class_weighted_scatter
from .validation import check_features_labels, check_reference, readable

__all__ = ["DeclineResult", "decline", "score", "DEFAULTS"]

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
    are computed once, since every sample of a class moves by the same vector.
    """
    time_step = _positive("time_step", time_step)
    exit_ratio = _positive("exit_ratio", exit_ratio, allow_zero=True)
    nsigma = _positive("nsigma", nsigma, allow_zero=True)
    constant = _positive("constant", constant, allow_zero=True)
    eps = _positive("eps", eps)
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {readable(max_steps)}")

    data = check_features_labels(features, labels, min_per_class=2)
    x = data.features
    if reference is None:
        center, spread = x.mean(axis=0), x.std(axis=0)
    else:
        reference = check_reference(reference, x.shape[1])
        center, spread = reference.mean(axis=0), reference.std(axis=0)
    scale = np.maximum(spread, eps)

    raw_means = class_means(x, data.codes, data.counts)
    radii = np.sqrt(class_weighted_scatter(x, data.codes, data.counts, raw_means, scale**-2.0))
    means = (raw_means - center) / scale

    total = np.zeros_like(means)
    trajectory = [raw_means]
    changes: list[float] = []
    for step in range(int(max_steps)):
        move = repulsion_step(means, radii, time_step=time_step, nsigma=nsigma, constant=constant)
        change = float(np.abs(move).sum())
        changes.append(change)
        if change == 0.0 or (step > 0 and change / changes[0] <= exit_ratio):
            break
        means = means + move
        total += move
        trajectory.append(raw_means + total * scale)

    steps = len(trajectory) - 1
    moved = add_class_offsets(x, data.codes, total * scale) if steps else x.copy()
    return DeclineResult(moved, steps, tuple(changes), np.stack(trajectory), data.classes)


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
    moved = decline(features, labels, reference, **ped_options).features
    return entry.function(moved, labels, **(metric_options or {}))
