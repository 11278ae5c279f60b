"""Stage: every metric on every model's features of every target, without PED and with each
PED setting (:mod:`pedlib.stages.variants`); one cached file per (model, target) cell under
``results/<study>/scores/`` and the table ``scores.csv``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .. import metrics, records
from ..codegraph import code_version
from ..context import StudyContext
from ..metrics import two_per_class
from ..params import ParamsError
from ..scoring import MetricFailure, score_features
from .declaration import Stage
from .feature_store import folder_name, key as feature_key, read, scoring_reference
from .variants import reference_sets, variants

__all__ = ["STAGE", "score", "score_cell", "cell_key", "problems", "scored_parts"]


def scored_parts(study: StudyContext) -> tuple[str, ...]:
    """The splits whose features are scored (``score_split``: train, or train + test as the
    reference code did)."""
    return ("train",) if study.params.score_split == "train" else ("train", "test")


def cell_key(study: StudyContext, model: str, dataset: str) -> str:
    """What one score cell depends on: its features, the references of every PED mode, the
    metrics and their options, the PED settings and the scoring code (once per context)."""
    known = study.shared("score cell keys", dict)
    if (model, dataset) not in known:
        known[model, dataset] = _cell_key(study, model, dataset)
    return known[model, dataset]


def _cell_key(study: StudyContext, model: str, dataset: str) -> str:
    parts = [*scored_parts(study)] + (["reference"] if len(study.datasets) > 1 else [])
    inputs = [feature_key(study, model, dataset, part) for part in scored_parts(study)]
    settings = variants(study)
    for mode in dict.fromkeys(v[1] for v in settings):  # ordered: keys never depend on hash order
        if mode != "none":
            inputs.append((mode, [feature_key(study, model, d, "reference")
                                  for d in reference_sets(study, model, dataset, mode)]))
    return records.content_key("scores", model, dataset, parts, inputs, study.params.metrics,
                               study.params.metric_options, settings, study.params.sensitivity,
                               code_version(__name__))


def problems(study: StudyContext) -> list[str]:
    """Every (dataset, metric) that cannot be scored at the study's sizes, each with its fix;
    checked before any work (sizes come from the splits, not the features)."""
    found = []
    uses_ped = bool(variants(study))
    for dataset in study.datasets:
        labels = np.concatenate([study.source(dataset).labels[study.indices(dataset, part)]
                                 for part in scored_parts(study)])
        counts = np.bincount(labels)
        counts = counts[counts > 0].tolist()
        checks = [(m, metrics.info(m).problem(len(labels), counts, 0, **study.params.metric_options.get(m, {})))
                  for m in study.params.metrics]
        if uses_ped:
            checks.append(("PED", two_per_class(len(labels), counts, 0)))
        for metric, problem in checks:
            if problem:
                found.append(f"{dataset} ({len(labels)} scored images, smallest class "
                             f"{min(counts)}): {metric}: {problem}")
    return found


def score_cell(study: StudyContext, model: str, dataset: str) -> pd.DataFrame:
    """Every metric on ``model``'s features of ``dataset`` (:func:`scored_parts`), plain and
    with each PED variant; one row per (metric, variant). A metric that fails on this cell
    (a ValueError, e.g. a mixture that does not fit) is recorded as NaN with a warning."""
    parts = [read(study, model, dataset, part) for part in scored_parts(study)]
    train = {name: np.concatenate([p[name] for p in parts]) for name in ("features", "labels")}
    settings = variants(study)
    references = {mode: scoring_reference(study, model, dataset, mode)
                  for mode in dict.fromkeys(v[1] for v in settings)}
    sensitivity = study.params.sensitivity.metrics if study.params.sensitivity else ()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricFailure)
        frame = score_features(train["features"], train["labels"], study.params.metrics,
                               study.params.metric_options, settings, references, sensitivity,
                               on_error="nan")
    for warning in caught:  # say which cell; pass every other warning on as it was
        if issubclass(warning.category, MetricFailure):
            warnings.warn(f"{model} on {dataset}: {warning.message}", MetricFailure, stacklevel=2)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    frame.insert(0, "dataset", dataset)
    frame.insert(0, "model", model)
    return frame


def _cell_path(study: StudyContext, model: str, dataset: str) -> Path:
    return study.output / "scores" / folder_name(model) / f"{dataset}.csv"


def score_and_write(study: StudyContext, model: str, dataset: str, key: str) -> None:
    """Score one cell and write its file (runs in a worker process)."""
    with threadpool_limits(limits=study.params.score_threads):
        frame = score_cell(study, model, dataset)
    cell = _cell_path(study, model, dataset)
    records.write_csv(frame, cell)
    records.write_record(cell, key, params=study.record_params(), seed=study.params.seed)


def check(study: StudyContext) -> None:
    """The sizes every metric (and PED) needs, checked for every cell before any stage works: a
    cell that cannot be scored stops the run, naming the cell and the fix."""
    found = problems(study)
    if found:
        raise ParamsError(f"params/{study.params.study}.yaml: {len(found)} scoring problem(s) "
                          f"before any work: " + "; ".join(found[:5]) + (" ..." if len(found) > 5 else ""))


def score(study: StudyContext, inputs=None) -> dict[str, pd.DataFrame]:
    """Scores of every (model, dataset) (``{"scores": table}``), cached per cell (:func:`check`
    has checked their sizes)."""
    study.map(score_and_write, [(*job, cell_key(study, *job)) for job in _stale_cells(study)], desc="score",
              unit="cells")
    return {"scores": pd.concat([records.read_csv(_cell_path(study, *job)) for job in _jobs(study)],
                                ignore_index=True)}


def _jobs(study: StudyContext) -> list[tuple[str, str]]:
    return [(m, d) for d in study.datasets for m in study.models]


def _stale_cells(study: StudyContext) -> list[tuple[str, str]]:
    """The (model, dataset) cells whose file is missing, damaged or stale."""
    return [job for job in _jobs(study) if not records.is_fresh(_cell_path(study, *job), cell_key(study, *job))]


def _cells_intact(study: StudyContext, tables) -> bool:
    """Every cell file still matches its record (a damaged or deleted cell is scored again)."""
    return not _stale_cells(study)


STAGE = Stage("score", needs=("extract",), make=score, outputs=lambda study: {"scores": "scores.csv"},
              key=lambda study, inputs: records.content_key(sorted(cell_key(study, *job) for job in _jobs(study))),
              intact=_cells_intact, check=check, key_needs=(),
              notebook="03", describes="every metric with and without PED, per (model, target)")
