"""How well a transferability score ranks models: rank correlations against real accuracy.

Every function takes two dicts keyed by model name (scores, accuracies); the keys must match.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import scipy.stats

__all__ = ["weighted_tau", "kendall_tau", "pearson", "spearman", "top1_relative_accuracy",
           "topk_recall", "correlations", "bootstrap_ci", "align"]


def align(scores: Mapping[str, float], accuracies: Mapping[str, float]):
    """Return (names, scores, accuracies) as sorted names and matching float arrays.

    Raises ``ValueError`` when the keys differ, a value is not finite, or fewer than 2 models.
    """
    if not isinstance(scores, Mapping) or not isinstance(accuracies, Mapping):
        raise ValueError("scores and accuracies must be dicts keyed by model name")
    missing_acc = sorted(set(scores) - set(accuracies))
    missing_score = sorted(set(accuracies) - set(scores))
    if missing_acc or missing_score:
        raise ValueError(
            "scores and accuracies must have the same models: "
            + "; ".join(part for part in (
                f"no accuracy for {missing_acc}" if missing_acc else "",
                f"no score for {missing_score}" if missing_score else "") if part))
    names = sorted(scores)
    if len(names) < 2:
        raise ValueError(f"need at least 2 models to rank, got {len(names)}")
    s = np.array([float(scores[k]) for k in names])
    a = np.array([float(accuracies[k]) for k in names])
    for label, values in (("scores", s), ("accuracies", a)):
        if not np.isfinite(values).all():
            bad = [names[i] for i in np.flatnonzero(~np.isfinite(values))]
            raise ValueError(f"{label} are not finite for {bad}")
    return names, s, a


def weighted_tau(scores: Mapping[str, float], accuracies: Mapping[str, float]) -> float:
    """Weighted Kendall's tau, exactly ``scipy.stats.weightedtau(scores, accuracies)``.

    Hyperbolic weights, ``rank=True`` (the average of the two lexicographic rankings): the
    definition used by LogME, SFDA and PED.
    """
    _, s, a = align(scores, accuracies)
    return float(scipy.stats.weightedtau(s, a).statistic)


def kendall_tau(scores: Mapping[str, float], accuracies: Mapping[str, float]) -> float:
    """Kendall's tau-b (``scipy.stats.kendalltau``)."""
    _, s, a = align(scores, accuracies)
    return float(scipy.stats.kendalltau(s, a).statistic)


def pearson(scores: Mapping[str, float], accuracies: Mapping[str, float]) -> float:
    """Pearson's linear correlation (``scipy.stats.pearsonr``)."""
    _, s, a = align(scores, accuracies)
    return float(scipy.stats.pearsonr(s, a).statistic)


def spearman(scores: Mapping[str, float], accuracies: Mapping[str, float]) -> float:
    """Spearman's rank correlation (``scipy.stats.spearmanr``)."""
    _, s, a = align(scores, accuracies)
    return float(scipy.stats.spearmanr(s, a).statistic)


def top1_relative_accuracy(scores: Mapping[str, float], accuracies: Mapping[str, float]) -> float:
    """Accuracy of the top-scored model divided by the best accuracy (1.0 = picked the best).

    When several models share the top score, the worst of them counts (a pessimistic pick).
    """
    _, s, a = align(scores, accuracies)
    return float(a[s == s.max()].min() / a.max())


def topk_recall(scores: Mapping[str, float], accuracies: Mapping[str, float], k: int = 3) -> float:
    """Share of the k most accurate models that are among the k top-scored models.

    Ties are broken by model name so the result is deterministic.
    """
    names, s, a = align(scores, accuracies)
    if not (isinstance(k, (int, np.integer)) and 1 <= k <= len(names)):
        raise ValueError(f"k must be an integer in [1, {len(names)}], got {k!r}")
    by_score = set(np.lexsort((np.arange(len(s)), -s))[:k])
    by_accuracy = set(np.lexsort((np.arange(len(a)), -a))[:k])
    return len(by_score & by_accuracy) / k


def correlations(scores: Mapping[str, float], accuracies: Mapping[str, float], k: int = 3) -> dict:
    """All the measures above in one dict."""
    k = min(k, len(scores))
    return dict(weighted_tau=weighted_tau(scores, accuracies),
                kendall_tau=kendall_tau(scores, accuracies),
                pearson=pearson(scores, accuracies),
                spearman=spearman(scores, accuracies),
                top1_relative_accuracy=top1_relative_accuracy(scores, accuracies),
                **{f"top{k}_recall": topk_recall(scores, accuracies, k)})


def bootstrap_ci(scores: Mapping[str, float], accuracies: Mapping[str, float],
                 statistic: Callable[[Mapping, Mapping], float] = weighted_tau, *,
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over models resampled with replacement.

    Resamples in which the statistic is undefined (e.g. every drawn model the same) are
    skipped. Returns (low, high); NaNs if no resample was defined.
    """
    names, s, a = align(scores, accuracies)
    rng = np.random.default_rng(seed)
    values = []
    fast = statistic is weighted_tau  # the common case: skip building dicts per resample
    for draw in rng.integers(0, len(names), size=(n_boot, len(names))):
        if len(np.unique(draw)) < 2:
            continue
        with np.errstate(all="ignore"):
            if fast:
                value = float(scipy.stats.weightedtau(s[draw], a[draw]).statistic)
            else:
                keys = [f"{i}:{j}" for i, j in enumerate(draw)]
                value = statistic(dict(zip(keys, s[draw])), dict(zip(keys, a[draw])))
        if np.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
