"""Stage: the linear-probe ground truth, one logistic regression per (model, target) on the
extract stage's train features, scored on its test features; cached per cell under
``results/<study>/groundtruth/linear_probe/`` and as the table ``groundtruth/linear_probe.csv``."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from .. import records
from ..codegraph import code_version
from ..context import StudyContext
from ..groundtruth import linear_probe as fit_linear_probe
from .declaration import Stage
from .feature_store import key as feature_key, read

__all__ = ["STAGE", "linear_probe", "linear_probe_key", "linear_probe_cell"]


def linear_probe_key(study: StudyContext) -> str:
    """What the probe's table depends on: its settings, the seed, the train and test features and
    this stage's code."""
    probe = study.params.groundtruth.linear_probe
    return records.content_key("linear_probe", probe, study.params.seed,
                               [feature_key(study, m, d, p) for m, d in _jobs(study) for p in ("train", "test")],
                               code_version(__name__))


def _cell_path(study: StudyContext, model: str, dataset: str) -> Path:
    return study.output / "groundtruth" / "linear_probe" / f"{model}__{dataset}.csv"


def linear_probe(study: StudyContext, inputs=None) -> dict[str, pd.DataFrame]:
    """Linear-probe accuracy of every model on every target (``{"linear_probe": table}``),
    cached per cell; the cells run in ``processes`` processes."""
    key = linear_probe_key(study)
    study.map(linear_probe_cell, [(key, *job) for job in _stale_cells(study)], desc="linear probe", unit="cells")
    return {"linear_probe": pd.concat([records.read_csv(_cell_path(study, *job)) for job in _jobs(study)],
                                      ignore_index=True)}


def _jobs(study: StudyContext) -> list[tuple[str, str]]:
    return [(m, d) for d in study.datasets for m in study.models]


def _stale_cells(study: StudyContext) -> list[tuple[str, str]]:
    """The (model, dataset) cells whose file is missing, damaged or stale."""
    key = linear_probe_key(study)
    return [job for job in _jobs(study)
            if not records.is_fresh(_cell_path(study, *job), records.content_key(key, *job))]


def linear_probe_cell(study: StudyContext, key: str, model: str, dataset: str) -> None:
    """Fit one linear probe and write its cell file (runs in a worker process)."""
    probe = study.params.groundtruth.linear_probe
    train = read(study, model, dataset, "train")
    test = read(study, model, dataset, "test")
    started = time.perf_counter()
    result = fit_linear_probe(train["features"], train["labels"], test["features"], test["labels"],
                              seed=study.params.seed, Cs=probe.Cs, folds=probe.folds,
                              max_iter=probe.max_iter, threads=probe.threads)
    frame = pd.DataFrame([dict(model=model, dataset=dataset, **result, seconds=time.perf_counter() - started)])
    cell = _cell_path(study, model, dataset)
    records.write_csv(frame, cell)
    records.write_record(cell, records.content_key(key, model, dataset), seed=study.params.seed)


def _cells_intact(study: StudyContext, tables) -> bool:
    """Every cell file still matches its record (a damaged or deleted cell is fitted again)."""
    return not _stale_cells(study)


def _outputs(study: StudyContext) -> dict[str, str]:
    used = "linear_probe" in study.params.evaluation.groundtruth
    return {"linear_probe": "groundtruth/linear_probe.csv"} if used else {}


STAGE = Stage("linear_probe", needs=("extract",), make=linear_probe, key=lambda study, inputs: linear_probe_key(study),
              outputs=_outputs, intact=_cells_intact, key_needs=(), notebook="01",
              describes="the linear-probe ground truth")
