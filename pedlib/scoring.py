"""Score one feature set with every metric, plain and after each PED variant."""

from __future__ import annotations

from ._extras import require as _require

_require("torch", "pedlib.scoring", ("pandas",))

import time
import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from . import metrics, ped
from .statistics import FeatureStatistics
from .validation import check_features_labels

__all__ = ["method_name", "score_features", "MetricFailure"]


class MetricFailure(RuntimeWarning):
    """A metric could not score a feature set; its score was recorded as NaN."""


def method_name(metric: str, variant: str) -> str:
    """``logme`` for the plain metric, ``logme+ped`` for PED's main setting, else
    ``logme+ped[variant]`` (e.g. ``logme+ped[ref=others]``)."""
    if variant == "plain":
        return metric
    if variant == "ped":
        return f"{metric}+ped"
    return f"{metric}+ped[{variant.removeprefix('ped:')}]"


def score_features(features, labels, metric_names: Sequence[str], metric_options: Mapping[str, dict],
                   variants: Sequence[tuple[str, str, dict]], references: Mapping[str, np.ndarray | None],
                   sensitivity_metrics: Sequence[str] = (), on_error: str = "raise") -> pd.DataFrame:
    """One row per (metric, variant): score, seconds (PED's own time included) and
    ``saturated`` (the score is at the metric's maximum and cannot tell models apart, e.g. an
    H-score of C - 1 when the features' rank reaches the number of samples).

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
    labels : ndarray of shape (n_samples,)
    metric_names : metrics to compute plain and with every main/ablation PED variant
    metric_options : per-metric keyword options
    variants : (variant, reference mode, PED options); variants named ``ped:nsigma=...`` are
        sensitivity settings and only use ``sensitivity_metrics``
    references : reference features by mode (None: PED standardises with the target itself)
    on_error : "raise" or "nan"
        What a metric raising ``ValueError`` (a feature set it cannot score) gives: the error,
        or a NaN score with a :class:`MetricFailure` warning naming the metric and the reason.
    """
    if on_error not in ("raise", "nan"):
        raise ValueError(f"on_error must be 'raise' or 'nan', got {on_error!r}")

    def run(metric: str, compute) -> float:
        try:
            return compute()
        except ValueError as error:
            if on_error == "raise":
                raise
            warnings.warn(f"{metric}: {error}; recorded as NaN", MetricFailure, stacklevel=3)
            return float("nan")

    chosen = {variant: [m for m in metric_names
                        if not variant.startswith("ped:nsigma") or m in sensitivity_metrics]
              for variant, _, _ in variants}
    # One set of statistics for the plain scores and every PED setting: the metrics with a
    # statistics path (LogME, GBC) score each setting as an update of it (the Gram matrix is
    # computed once for logme and logme_reference alike); the others get the moved features.
    has_statistics = {m: metrics.info(m).from_statistics is not None for m in metric_names}
    translations = sum(any(has_statistics[m] for m in names) for names in chosen.values())
    started = time.perf_counter()
    stats = FeatureStatistics(check_features_labels(features, labels), translations=max(translations, 1))
    shared_seconds = time.perf_counter() - started
    shape = (stats.n_classes, stats.n_samples, stats.n_features)

    def score_one(metric: str, translation) -> float:
        entry = metrics.info(metric)
        return run(metric, lambda: ped.score_translation(entry, translation, labels,
                                                         metric_options.get(metric, {})))

    standardized = {mode: None if references[mode] is None
                    else ped.standardization(references[mode], stats.n_features)
                    for mode in {mode for _, mode, _ in variants}}
    rows = []
    plain = stats.translated(None)
    for metric in metric_names:
        started = time.perf_counter()
        value = score_one(metric, plain)
        rows.append(dict(metric=metric, variant="plain", reference="", nsigma=np.nan,
                         time_step=np.nan, ped_steps=0, score=value,
                         seconds=time.perf_counter() - started + shared_seconds))
        shared_seconds = 0.0
    for variant, mode, options in variants:
        started = time.perf_counter()
        motion = ped.motion(stats, standardized[mode], **options)
        translation = stats.translated(motion.offsets)
        ped_seconds = time.perf_counter() - started
        for metric in chosen[variant]:
            started = time.perf_counter()
            value = score_one(metric, translation)
            rows.append(dict(metric=metric, variant=variant, reference=mode,
                             nsigma=options["nsigma"], time_step=options["time_step"],
                             ped_steps=motion.steps, score=value,
                             seconds=time.perf_counter() - started + ped_seconds))
    frame = pd.DataFrame(rows)
    frame.insert(2, "method", [method_name(m, v) for m, v in zip(frame.metric, frame.variant)])
    frame["saturated"] = [bool(np.isfinite(v)) and metrics.info(m).saturated(v, *shape)
                          for m, v in zip(frame.metric, frame.score)]
    return frame
