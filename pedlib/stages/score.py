"""Stage: every metric on every model's features of every target, without PED and with each
PED setting (:mod:`pedlib.stages.variants`); one cached file per (model, target) cell under
``results/<study>/scores/`` and the table ``scores.csv``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .. import metrics, records
from ..params import ParamsError
from ..scoring import MetricFailure, score_features
from . import extract
from .variants import reference_sets, variants

if TYPE_CHECKING:
    from ..study import Study

__all__ = ["score", "score_cell", "cell_key", "problems", "reference", "scoring_reference", "scored_parts"]

#: The code a score cell depends on (editing other modules keeps score caches valid).
CODE = ("metrics", "ped", "_stats", "statistics", "validation", "scoring")


def scored_parts(study: "Study") -> tuple[str, ...]:
    """The splits whose features are scored (``score_split``: train, or train + test as the
    reference code did)."""
    return ("train",) if study.params.score_split == "train" else ("train", "test")


def reference(study: "Study", model: str, target: str, mode: str) -> np.ndarray | None:
    """PED's reference features for ``model`` on ``target`` (see ReferenceParams)."""
    if mode == "none":
        return None
    sets = reference_sets(study, model, target, mode)
    if not sets:
        raise ParamsError(f"PED reference mode {mode!r} for {target!r} needs another dataset "
                          "in the study; use reference.mode: none")
    return np.concatenate([extract.features(study, model, d, "reference")["features"] for d in sets])


def scoring_reference(study: "Study", model: str, target: str, mode: str) -> np.ndarray | None:
    """The reference PED is scored with: :func:`reference`, except in a one-target study,
    where PED standardises with the target's own statistics."""
    return reference(study, model, target, mode) if len(study.datasets) > 1 else None


def cell_key(study: "Study", model: str, dataset: str) -> str:
    """What one score cell depends on: its features, the references of every PED mode, the
    metrics and their options, the PED settings and the scoring code."""
    parts = [*scored_parts(study)] + (["reference"] if len(study.datasets) > 1 else [])
    inputs = [extract.key(study, model, dataset, part) for part in scored_parts(study)]
    settings = variants(study)
    for mode in dict.fromkeys(v[1] for v in settings):  # ordered: keys never depend on hash order
        if mode != "none":
            inputs.append((mode, [extract.key(study, model, d, "reference")
                                  for d in reference_sets(study, model, dataset, mode)]))
    return records.content_key("scores", model, dataset, parts, inputs, study.params.metrics,
                               study.params.metric_options, settings, study.params.sensitivity,
                               records.code_version(*CODE))


def problems(study: "Study") -> list[str]:
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
            checks.append(("PED", metrics._registry.two_per_class(len(labels), counts, 0)))
        for metric, problem in checks:
            if problem:
                found.append(f"{dataset} ({len(labels)} scored images, smallest class "
                             f"{min(counts)}): {metric}: {problem}")
    return found


def score_cell(study: "Study", model: str, dataset: str) -> pd.DataFrame:
    """Every metric on ``model``'s features of ``dataset`` (:func:`scored_parts`), plain and
    with each PED variant; one row per (metric, variant). A metric that fails on this cell
    (a ValueError, e.g. a mixture that does not fit) is recorded as NaN with a warning."""
    parts = [extract.features(study, model, dataset, part) for part in scored_parts(study)]
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


def _cell_path(study: "Study", model: str, dataset: str) -> Path:
    return study.output / "scores" / model / f"{dataset}.csv"


def score_and_write(study: "Study", model: str, dataset: str, key: str) -> None:
    """Score one cell and write its file (runs in a worker process)."""
    with threadpool_limits(limits=study.params.score_threads):
        frame = score_cell(study, model, dataset)
    cell = _cell_path(study, model, dataset)
    records.write_csv(frame, cell)
    records.write_record(cell, key, params=study.record_params(), seed=study.params.seed)


def score(study: "Study") -> pd.DataFrame:
    """Scores of every (model, dataset), cached per cell; writes ``scores.csv``.

    The sizes every metric (and PED) needs are checked for every cell first: a cell that
    cannot be scored stops the stage before any work, naming the cell and the fix."""
    found = problems(study)
    if found:
        raise ParamsError(f"params/{study.params.study}.yaml: {len(found)} scoring problem(s) "
                          f"before any work: " + "; ".join(found[:5]) + (" ..." if len(found) > 5 else ""))
    jobs = [(m, d) for d in study.datasets for m in study.models]
    keys = {job: cell_key(study, *job) for job in jobs}
    pending = [job for job in jobs if not records.is_fresh(_cell_path(study, *job), keys[job])]
    if pending:
        extract.extract(study, parts=tuple(scored_parts(study)) + ("reference",))
    study.map(score_and_write, [(*job, keys[job]) for job in pending], desc="score", unit="cells")
    table = pd.concat([records.read_csv(_cell_path(study, *job))
                       for job in jobs], ignore_index=True)
    path = study.output / "scores.csv"
    records.write_csv(table, path)
    records.write_record(path, records.content_key(sorted(keys.values())),
                         params=study.record_params(), seed=study.params.seed)
    return table
