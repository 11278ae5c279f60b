"""Stage: every ground truth the study evaluates against (``evaluation.groundtruth``), as one
accuracy per (model, dataset): the linear probe (:mod:`pedlib.stages.linear_probe`), the
fine-tuning table (:mod:`pedlib.stages.finetune`, mean and spread over seeds) and the papers'
published accuracies; ``results/<study>/groundtruth/accuracies.csv``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import records
from ..context import StudyContext
from ..params import ParamsError
from .declaration import Stage

__all__ = ["STAGE", "accuracies", "by_truth", "published", "tables"]

COLUMNS = ["groundtruth", "model", "dataset", "accuracy", "accuracy_std"]


def published(study: StudyContext) -> pd.DataFrame:
    """Published accuracies (``groundtruth.published``: a CSV of model, dataset, accuracy)."""
    table = study.params.groundtruth.published
    if table is None:
        raise ParamsError(f"{study.params.study}: evaluation uses 'published' ground truth but "
                          "groundtruth.published names no table")
    from ..groundtruth.published import load_published_accuracies

    return load_published_accuracies(Path(study.params.root) / table)


def tables(study: StudyContext, inputs) -> dict[str, pd.DataFrame]:
    """Each ground truth's own table, in ``evaluation.groundtruth``'s order (the first one
    orders the figures' best/worst models): the linear probe's and fine-tuning's from the
    stages that make them, the published one read."""
    out = {}
    for name in study.params.evaluation.groundtruth:
        if name == "linear_probe" and inputs.get("linear_probe"):
            out[name] = inputs["linear_probe"]["linear_probe"]
        elif name == "finetune" and inputs.get("finetune") is not None:
            out[name] = inputs["finetune"]
        elif name == "published":
            out[name] = published(study)
    return out


def accuracies(study: StudyContext, inputs) -> dict[str, pd.DataFrame]:
    """``{"accuracies": table}``: one row per ground truth, model and dataset, with columns
    groundtruth, model, dataset, accuracy, accuracy_std (fine-tuning: mean and spread over
    seeds)."""
    parts = []
    for name, table in tables(study, inputs).items():
        if name == "finetune":
            grouped = table.groupby(["model", "dataset"], sort=False)["test_accuracy"]
            table = grouped.agg(accuracy="mean", accuracy_std="std").reset_index()
        elif "accuracy_std" not in table:
            table = table.assign(accuracy_std=np.nan)
        parts.append(table.assign(groundtruth=name)[COLUMNS])
    return {"accuracies": pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)}


def by_truth(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The accuracies table as ``{ground truth: (model, dataset, accuracy, accuracy_std)}``,
    in the study's order."""
    return {name: group[COLUMNS[1:]].reset_index(drop=True)
            for name, group in table.groupby("groundtruth", sort=False)}


def _key(study: StudyContext, inputs) -> str:
    return records.content_key("groundtruth", {name: records.content_key(table.to_csv())
                                               for name, table in tables(study, inputs).items()},
                               list(study.params.evaluation.groundtruth))


STAGE = Stage("groundtruth", needs=("linear_probe", "finetune"), make=accuracies, key=_key,
              outputs=lambda study: {"accuracies": "groundtruth/accuracies.csv"}, notebook="01",
              describes="every ground truth as one accuracy per (model, target)")
