"""Stage: every ground truth the study evaluates against: the linear probe (cached per
cell and as ``results/<study>/groundtruth/linear_probe.csv``), the fine-tuning table
(:mod:`pedlib.stages.finetune`) and the papers' published accuracies."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import records
from ..groundtruth import linear_probe as fit_linear_probe
from ..params import ParamsError
from . import extract

if TYPE_CHECKING:
    from ..study import Study

__all__ = ["groundtruth", "accuracies", "linear_probe", "linear_probe_key", "published"]


def groundtruth(study: "Study", *, recompute_finetune: bool = False) -> dict[str, pd.DataFrame]:
    """Every ground truth of ``evaluation.groundtruth``, in that order (the first one orders
    the figures' best/worst models)."""
    out = {}
    for name in study.params.evaluation.groundtruth:
        if name == "linear_probe":
            out[name] = linear_probe(study)
        elif name == "finetune" and study.params.groundtruth.finetune.enabled:
            out[name] = study.finetuning.table(recompute=recompute_finetune)
        elif name == "published":
            out[name] = published(study)
    return out


def accuracies(study: "Study") -> dict[str, pd.DataFrame]:
    """Each ground truth as one accuracy per (model, dataset): columns model, dataset,
    accuracy, accuracy_std (fine-tuning: mean and spread over seeds)."""
    out = {}
    for name, table in groundtruth(study).items():
        if name == "finetune":
            grouped = table.groupby(["model", "dataset"], sort=False)["test_accuracy"]
            table = grouped.agg(accuracy="mean", accuracy_std="std").reset_index()
        elif "accuracy_std" not in table:
            table = table.assign(accuracy_std=np.nan)
        out[name] = table[["model", "dataset", "accuracy", "accuracy_std"]]
    return out


def linear_probe_key(study: "Study") -> str:
    probe = study.params.groundtruth.linear_probe
    jobs = [(m, d) for d in study.datasets for m in study.models]
    return records.content_key("linear_probe", probe, study.params.seed,
                               [extract.key(study, m, d, p) for m, d in jobs for p in ("train", "test")],
                               records.code_version("groundtruth.linear_probe", "validation"))


def linear_probe(study: "Study") -> pd.DataFrame:
    """Linear-probe accuracy of every model on every target (cached per cell and as a
    table); the cells run in ``processes`` processes.

    The probes need the train and test features; every other feature set the study needs
    (PED's reference samples) is extracted in the same pass, so that the worker processes
    share one queue of groups, the largest first, and stay busy to its end."""
    path = study.output / "groundtruth" / "linear_probe.csv"
    key = linear_probe_key(study)
    if records.is_fresh(path, key):
        return pd.read_csv(path)
    extract.extract(study)
    jobs = [(m, d) for d in study.datasets for m in study.models]
    pending = [job for job in jobs if not records.is_fresh(_cell_path(study, *job), records.content_key(key, *job))]
    study.map(linear_probe_cell, [(key, *job) for job in pending], desc="linear probe", unit="cells")
    table = pd.concat([pd.read_csv(_cell_path(study, *job)) for job in jobs], ignore_index=True)
    records.write_csv(table, path)
    records.write_record(path, key, params=study.record_params(), seed=study.params.seed)
    return table


def _cell_path(study: "Study", model: str, dataset: str) -> Path:
    return study.output / "groundtruth" / "linear_probe" / f"{model}__{dataset}.csv"


def linear_probe_cell(study: "Study", key: str, model: str, dataset: str) -> None:
    """Fit one linear probe and write its cell file (runs in a worker process)."""
    probe = study.params.groundtruth.linear_probe
    train = extract.features(study, model, dataset, "train")
    test = extract.features(study, model, dataset, "test")
    started = time.perf_counter()
    result = fit_linear_probe(train["features"], train["labels"], test["features"], test["labels"],
                              seed=study.params.seed, Cs=probe.Cs, folds=probe.folds,
                              max_iter=probe.max_iter, threads=probe.threads)
    frame = pd.DataFrame([dict(model=model, dataset=dataset, **result, seconds=time.perf_counter() - started)])
    cell = _cell_path(study, model, dataset)
    records.write_csv(frame, cell)
    records.write_record(cell, records.content_key(key, model, dataset), seed=study.params.seed)


def published(study: "Study") -> pd.DataFrame:
    """Published accuracies (``groundtruth.published``: a CSV of model, dataset, accuracy)."""
    table = study.params.groundtruth.published
    if table is None:
        raise ParamsError(f"{study.params.study}: evaluation uses 'published' ground truth but "
                          "groundtruth.published names no table")
    from ..groundtruth.published import load_published_accuracies

    return load_published_accuracies(Path(study.params.root) / table)
