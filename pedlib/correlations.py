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
           "topk_recall", "correlations", "bootstrap_ci", "bootstrap_mean_ci", "ped_effect", "evaluation_row", "align",
           "merge_ties", "TIE_RTOL", "weighted_tau_batch"]

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


def weighted_tau_batch(x, y, valid=None) -> np.ndarray:
    """``scipy.stats.weightedtau(x[b], y[b]).statistic`` for every row ``b`` at once.

    The same definition (Vigna 2015; hyperbolic weights ``1 / (r + 1)`` of each element's
    rank ``r``, additive pair weights, ``rank=True``: the mean of the taus under the decreasing
    lexicographic ranks by (x, y) and by (y, x), elements equal in both ranked by decreasing
    index as scipy's stable sort does) computed over all pairs in a few array operations
    instead of one scipy call per row: a bootstrap's thousand resamples in one pass. Agrees
    with scipy to rounding (``tests/test_evaluate.py`` compares them on tied, resampled rows).

    Parameters
    ----------
    x, y : array_like, shape (B, n)
    valid : bool array, shape (B, n), optional
        Elements that take part in row ``b`` (the others are left out, as if removed).

    Returns
    -------
    ndarray, shape (B,): NaN where a row's tau is undefined (fewer than two distinct values).
    """
    x, y = np.atleast_2d(np.asarray(x, dtype=np.float64)), np.atleast_2d(np.asarray(y, dtype=np.float64))
    valid = np.ones(x.shape, dtype=bool) if valid is None else np.atleast_2d(np.asarray(valid, dtype=bool))
    if not x.shape == y.shape == valid.shape:
        raise ValueError(f"x, y and valid must have the same shape, got {x.shape}, {y.shape}, {valid.shape}")
    n = x.shape[1]
    rows = max(1, _PAIR_BLOCK // max(n * n, 1))  # memory (rows, n, n) per temporary
    return np.concatenate([_weighted_tau_block(x[i:i + rows], y[i:i + rows], valid[i:i + rows])
                           for i in range(0, len(x), rows)]) if len(x) else np.empty(0)


#: Pair entries per block of :func:`weighted_tau_batch` (8 MB per float temporary).
_PAIR_BLOCK = 1 << 20


def _weighted_tau_block(x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    both = valid[:, :, None] & valid[:, None, :]
    sign_x = np.sign(x[:, :, None] - x[:, None, :]) * both
    sign_y = np.sign(y[:, :, None] - y[:, None, :]) * both
    concordance, untied_x, untied_y = sign_x * sign_y, sign_x != 0, sign_y != 0
    positions = np.broadcast_to(np.arange(x.shape[1]), x.shape)
    taus = []
    for first, second in ((x, y), (y, x)):
        # left-out elements sort first, so after reversal they rank after every valid one
        order = np.lexsort((second, first, valid), axis=-1)[:, ::-1]
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, positions, axis=-1)
        weight = 1.0 / (rank + 1.0)
        pair = weight[:, :, None] + weight[:, None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            taus.append((pair * concordance).sum(axis=(1, 2))
                        / np.sqrt((pair * untied_x).sum(axis=(1, 2)) * (pair * untied_y).sum(axis=(1, 2))))
    return (taus[0] + taus[1]) / 2


def _percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(scores: Mapping[str, float], accuracies: Mapping[str, float],
                 statistic: Callable[[Mapping, Mapping], float] = weighted_tau, *,
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over models resampled with replacement.

    Resamples in which the statistic is undefined (e.g. every drawn model the same) are
    skipped. Returns (low, high); NaNs if no resample was defined. The weighted tau (the
    default) is computed for all resamples at once (:func:`weighted_tau_batch`).
    """
    names, s, a = align(scores, accuracies)
    draws = np.random.default_rng(seed).integers(0, len(names), size=(n_boot, len(names)))
    draws = draws[draws.min(axis=1) < draws.max(axis=1)]  # at least two distinct models
    if statistic is weighted_tau:
        return _percentile_interval(weighted_tau_batch(s[draws], a[draws]), level)
    values = []
    for draw in draws:
        keys = [f"{i}:{j}" for i, j in enumerate(draw)]
        with np.errstate(all="ignore"):
            values.append(statistic(dict(zip(keys, s[draw])), dict(zip(keys, a[draw]))))
    return _percentile_interval(np.asarray(values, dtype=np.float64), level)


def _joint_taus(targets: list[list[tuple[list, np.ndarray, np.ndarray]]], *, n_boot: int,
                seed: int) -> np.ndarray:
    """Weighted taus of every ranking of every target on ``n_boot`` joint resamples of models.

    ``targets[t]`` lists target t's rankings as :func:`align` gives them (names, scores,
    accuracies). One draw of models with replacement from the union of all targets' models
    serves every target and ranking (a model is good or bad across targets, and two rankings
    of one target are compared on the same models). Returns shape (n_boot, targets, rankings);
    NaN where a ranking is undefined on a resample.
    """
    union = sorted(set().union(*(names for rankings in targets for names, _, _ in rankings)))
    draws = np.random.default_rng(seed).integers(0, len(union), size=(n_boot, len(union)))
    taus = np.empty((n_boot, len(targets), max(len(r) for r in targets)))
    for t, rankings in enumerate(targets):
        for r, (names, s, a) in enumerate(rankings):
            where = {name: i for i, name in enumerate(names)}
            picked = np.array([where.get(name, -1) for name in union])[draws]  # -1: a model it lacks
            present = picked >= 0
            # a resample with fewer than two distinct models of this target has no untied pair:
            # weighted_tau_batch gives NaN there, which the callers skip
            index = np.where(present, picked, 0)
            taus[:, t, r] = weighted_tau_batch(s[index], a[index], present)
    return taus


def bootstrap_mean_ci(pairs: Mapping[str, tuple[Mapping[str, float], Mapping[str, float]]], *,
                      n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean weighted tau over several targets.

    ``pairs`` maps each target to its (scores, accuracies). Each resample draws models with
    replacement from the union of the targets' models, *the same draw for every target* (a
    model is good or bad across targets, so targets are not independent), and averages the
    targets' weighted taus on the drawn models they have. Resamples where a target's tau is
    undefined are skipped. Returns (low, high); NaNs if no resample was defined.
    """
    aligned = [[align(scores, accuracies)] for scores, accuracies in pairs.values()]
    if not aligned:
        return float("nan"), float("nan")
    taus = _joint_taus(aligned, n_boot=n_boot, seed=seed)[:, :, 0]
    defined = np.isfinite(taus).all(axis=1)
    return _percentile_interval(taus[defined].mean(axis=1), level)


def ped_effect(triples: Mapping[str, tuple[Mapping[str, float], Mapping[str, float], Mapping[str, float]]], *,
               n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """The change in weighted tau from one scoring to another, per target and on average,
    with paired bootstrap intervals.

    ``triples`` maps each target to (scores without PED, scores with PED, accuracies). Both
    rankings of a target are taken on the models that both score; a target where either
    ranking is undefined (e.g. every score tied) is left out of the mean. Intervals: percentile
    bootstrap over models, the same draw for both rankings and, for the mean, for every target
    (as :func:`bootstrap_mean_ci`); resamples where a difference is undefined are skipped.

    Returns
    -------
    dict with ``per_target``: target -> (delta, low, high, n_models), and ``mean``:
    (delta, low, high, n_targets). ``delta`` is ``wtau(with) - wtau(without)``.
    """
    aligned, per_target = {}, {}
    for target, (without, with_, accuracies) in triples.items():
        common = sorted(set(without) & set(with_) & set(accuracies))
        delta = low = high = float("nan")
        if len(common) >= 2:
            truth = {m: accuracies[m] for m in common}
            rankings = [{m: scores[m] for m in common} for scores in (without, with_)]
            with np.errstate(all="ignore"):
                delta = weighted_tau(rankings[1], truth) - weighted_tau(rankings[0], truth)
            if np.isfinite(delta):
                aligned[target] = [align(ranking, truth) for ranking in rankings]
                taus = _joint_taus([aligned[target]], n_boot=n_boot, seed=seed)[:, 0]
                low, high = _percentile_interval(taus[:, 1] - taus[:, 0], level)
        per_target[target] = (delta, low, high, len(common))
    if not aligned:
        return dict(per_target=per_target, mean=(float("nan"),) * 3 + (0,))
    taus = _joint_taus(list(aligned.values()), n_boot=n_boot, seed=seed)
    differences = taus[:, :, 1] - taus[:, :, 0]
    defined = np.isfinite(differences).all(axis=1)
    low, high = _percentile_interval(differences[defined].mean(axis=1), level)
    mean = float(np.mean([per_target[t][0] for t in aligned]))
    return dict(per_target=per_target, mean=(mean, low, high, len(aligned)))


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
