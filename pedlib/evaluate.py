"""How well a transferability score ranks models: rank correlations against real accuracy.

Every function takes two dicts keyed by model name (scores, accuracies); the keys must match.

Ties: values closer than :data:`TIE_RTOL` (relative) are one value to every statistic here
(:func:`merge_ties`). Scores that are equal in exact arithmetic come out of floating point
a few units in the last place apart (six saturated H-scores of C - 1 = 11 read
10.999999999999964, 11.000000000000007, ...), and ranking models by those last bits would
make the evaluation depend on summation order, thread counts and BLAS builds.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import scipy.stats

__all__ = ["weighted_tau", "kendall_tau", "pearson", "spearman", "top1_relative_accuracy",
           "topk_recall", "correlations", "bootstrap_ci", "bootstrap_mean_ci", "evaluation_row", "align",
           "merge_ties", "TIE_RTOL"]

#: Relative tolerance under which two scores (or accuracies) are the same value.
TIE_RTOL = 1e-9


def merge_ties(values, rtol: float = TIE_RTOL) -> np.ndarray:
    """``values`` with every group of near-equal values replaced by the group's smallest.

    Sorted values form one group while each is within ``rtol * max(|a|, |b|)`` of the
    previous one. Returns a new float array in the input's order.

    Examples
    --------
    >>> merge_ties([11.000000000000007, 10.999999999999964, 3.0]).tolist()
    [10.999999999999964, 10.999999999999964, 3.0]
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return values.copy()
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.diff(ordered) > rtol * np.maximum(np.abs(ordered[1:]), np.abs(ordered[:-1]))
    group = np.concatenate([[0], np.cumsum(starts)])
    first = ordered[np.concatenate([[0], np.flatnonzero(starts) + 1])]
    merged = np.empty_like(values)
    merged[order] = first[group]
    return merged


def align(scores: Mapping[str, float], accuracies: Mapping[str, float]):
    """Return (names, scores, accuracies) as sorted names and matching float arrays, with
    near-equal values merged into ties (:func:`merge_ties`).

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
    return names, merge_ties(s), merge_ties(a)


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


def bootstrap_mean_ci(pairs: Mapping[str, tuple[Mapping[str, float], Mapping[str, float]]], *,
                      n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean weighted tau over several targets.

    ``pairs`` maps each target to its (scores, accuracies). Each resample draws models with
    replacement from the union of the targets' models, *the same draw for every target* (a
    model is good or bad across targets, so targets are not independent), and averages the
    targets' weighted taus on the drawn models they have. Resamples where a target's tau is
    undefined are skipped. Returns (low, high); NaNs if no resample was defined.
    """
    aligned = [align(scores, accuracies) for scores, accuracies in pairs.values()]
    union = sorted(set().union(*(names for names, _, _ in aligned)))
    positions = []
    for names, _, _ in aligned:
        where = {name: i for i, name in enumerate(names)}
        positions.append(np.array([where.get(name, -1) for name in union]))
    rng = np.random.default_rng(seed)
    means = []
    for draw in rng.integers(0, len(union), size=(n_boot, len(union))):
        values = []
        for (_, s, a), position in zip(aligned, positions):
            picked = position[draw]
            picked = picked[picked >= 0]
            if len(np.unique(picked)) < 2:
                break
            with np.errstate(all="ignore"):
                value = float(scipy.stats.weightedtau(s[picked], a[picked]).statistic)
            if not np.isfinite(value):
                break
            values.append(value)
        else:
            means.append(np.mean(values))
    if not means:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def evaluation_row(scores: Mapping[str, float], accuracies: Mapping[str, float], *, n_boot: int,
                   level: float, seed: int, interval: bool) -> dict:
    """:func:`correlations` of one ranking, with the weighted tau's bootstrap interval when
    ``interval`` (``wtau_low``/``wtau_high``, else NaN)."""
    import warnings

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = correlations(scores, accuracies)
        low, high = (bootstrap_ci(scores, accuracies, n_boot=n_boot, level=level, seed=seed)
                     if interval and n_boot else (np.nan, np.nan))
    return dict(**stats, n_models=len(scores), wtau_low=low, wtau_high=high)
