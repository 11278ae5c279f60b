"""Score one feature set with every metric, plain and after each PED variant."""

from __future__ import annotations

import time
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from . import metrics, ped

__all__ = ["method_name", "score_features"]


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
                   sensitivity_metrics: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (metric, variant): score and seconds (PED's own time included).

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
    labels : ndarray of shape (n_samples,)
    metric_names : metrics to compute plain and with every main/ablation PED variant
    metric_options : per-metric keyword options
    variants : (variant, reference mode, PED options); variants named ``ped:nsigma=...`` are
        sensitivity settings and only use ``sensitivity_metrics``
    references : reference features by mode (None: PED standardises with the target itself)
    """
    x = np.asarray(features, dtype=np.float64)
    rows = []
    for metric in metric_names:
        started = time.perf_counter()
        value = metrics.get(metric)(x, labels, **metric_options.get(metric, {}))
        rows.append(dict(metric=metric, variant="plain", reference="", nsigma=np.nan,
                         time_step=np.nan, ped_steps=0, score=value,
                         seconds=time.perf_counter() - started))
    for variant, mode, options in variants:
        started = time.perf_counter()
        moved = ped.decline(x, labels, references[mode], **options)
        ped_seconds = time.perf_counter() - started
        chosen = [m for m in metric_names if not variant.startswith("ped:nsigma") or m in sensitivity_metrics]
        for metric in chosen:
            started = time.perf_counter()
            value = metrics.get(metric)(moved.features, labels, **metric_options.get(metric, {}))
            rows.append(dict(metric=metric, variant=variant, reference=mode,
                             nsigma=options["nsigma"], time_step=options["time_step"],
                             ped_steps=moved.steps, score=value,
                             seconds=time.perf_counter() - started + ped_seconds))
    frame = pd.DataFrame(rows)
    frame.insert(2, "method", [method_name(m, v) for m, v in zip(frame.metric, frame.variant)])
    return frame
