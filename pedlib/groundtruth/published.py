"""Published accuracies and weighted-tau tables (``params/published/``, copied from the papers)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

__all__ = ["load_published_accuracies", "load_published_wtau"]


def load_published_accuracies(path: str | os.PathLike) -> pd.DataFrame:
    """A table with one row per dataset and one column per model -> (model, dataset, accuracy).

    Accuracies stay in the paper's units (percent; mAP for voc2007; mean per-class accuracy
    for aircraft, caltech101, flowers and pets); rank correlations do not depend on units.
    """
    wide = pd.read_csv(Path(path))
    if "dataset" not in wide.columns:
        raise ValueError(f"{path}: expected a 'dataset' column and one column per model")
    long = wide.melt(id_vars="dataset", var_name="model", value_name="accuracy")
    if long.accuracy.isna().any():
        raise ValueError(f"{path}: missing accuracies for {long[long.accuracy.isna()][['model', 'dataset']].values[:3].tolist()}")
    return long[["model", "dataset", "accuracy"]]


def load_published_wtau(path: str | os.PathLike) -> pd.DataFrame:
    """A paper's weighted-tau table -> (method, dataset, weighted_tau); method names as pedlib's
    (``logme``, ``logme+ped``, ...)."""
    wide = pd.read_csv(Path(path)).drop(columns=["reference"], errors="ignore")
    return wide.melt(id_vars="method", var_name="dataset", value_name="weighted_tau")
