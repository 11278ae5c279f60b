"""Stage: the features of every model on every target split and on PED's reference samples,
cached by content under ``results/<study>/features/<model>/<dataset>-<part>.npz``
(:mod:`pedlib.features`)."""

from __future__ import annotations

import time
import numpy as np
import pandas as pd

from .. import records
from ..context import StudyContext
from ..data.loader import decoded_batches
from ..features import extract_shared
from ..models import extraction_batches
from ..progress import advance, progress
from .declaration import Stage
from .feature_store import feature_jobs, feature_path, in_splits, key

__all__ = ["STAGE", "extract", "features", "extract_group"]


def features(study: StudyContext, model: str, dataset: str, part: str) -> dict:
    """Features of ``model`` on ``dataset``'s ``part`` (train, test, reference), cached:
    ``features`` (N, D) float32, ``labels``, ``indices``. :func:`extract` does many models
    at once."""
    return _features(study, model, dataset, part)[0]


def _features(study: StudyContext, model: str, dataset: str, part: str) -> tuple[dict, bool]:
    path = feature_path(study, model, dataset, part)
    if records.is_fresh(path, key(study, model, dataset, part)):
        return records.load_npz(path), False
    extract_group(study, dataset, part, (model,))
    return records.load_npz(path), True


def _batches(study: StudyContext, dataset: str, indices: np.ndarray):
    """uint8 batches of ``dataset[indices]`` in ``extract.batch_size`` chunks: decoded on
    the GPU when extraction runs on CUDA and the images are JPEG files, else by
    ``extract.workers`` DataLoader processes (0: here)."""
    ex = study.params.extract
    return decoded_batches(study.source(dataset), extraction_batches(indices, ex.batch_size), device=study.device,
                           workers=ex.workers, gpu_decode=ex.gpu_decode)


def extract(study: StudyContext, inputs=None, *, parts: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The features of every (model, dataset, part) the study needs (``parts``: only these
    parts); returns one row per feature set (n, dim, cached, seconds).

    Each (dataset, part) is decoded once and every model whose features are missing or
    stale runs on each decoded batch (per-model caches and records as with
    :func:`features`, and the same batches, so the same features); when every model is
    fresh nothing is decoded. The runner checks the ports first (:func:`pedlib.stages.ports.check`,
    cached): no feature of a port that disagrees with its original is ever computed.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for model, dataset, part in feature_jobs(study):
        if parts is None or part in parts:
            groups.setdefault((dataset, part), []).append(model)
    rows, work = [], []
    for (dataset, part), group in groups.items():
        stale = [m for m in group if not records.is_fresh(feature_path(study, m, dataset, part),
                                                          key(study, m, dataset, part))]
        rows += [_row(study, m, dataset, part, cached=True, seconds=0.0) for m in group if m not in stale]
        if stale:
            work.append((dataset, part, tuple(stale)))
    costs = [_cost(study, *group) for group in work]
    if study.params.extract.parallel and study.device.type == "cpu" and len(work) > 1:
        # each (dataset, split) group in a worker process, on extract.threads threads there;
        # the largest first, so that no process is left with a long group at the end; a
        # reference group once the split groups whose features it takes are done (in_splits)
        order = sorted(range(len(work)), key=lambda i: (work[i][1] == "reference", -costs[i]))
        position = {(work[i][0], work[i][1]): n for n, i in enumerate(order)}
        after = [[position[(dataset, split)] for split in in_splits(study, dataset) if (dataset, split) in position]
                 if part == "reference" else [] for dataset, part, _ in (work[i] for i in order)]
        done = study.map(extract_group, [work[i] for i in order], desc="extract", unit="feature sets", after=after,
                         work=[costs[i] for i in order])
        timings = [0.0] * len(work)
        for i, seconds in zip(order, done):
            timings[i] = seconds
    else:  # feature_jobs gives the splits before the reference samples
        timings = []
        bar = progress(total=len(work), desc="extract", unit="feature sets", enabled=study.progress,
                       work_total=float(sum(costs)))
        try:
            for (dataset, part, stale), cost in zip(work, costs):
                bar.set_postfix_str(f"{dataset} {part}: {len(stale)} models")
                timings.append(extract_group(study, dataset, part, stale))
                advance(bar, cost)
        finally:
            bar.close()
            study.release_backbones()
    for (dataset, part, stale), seconds in zip(work, timings):
        rows += [_row(study, m, dataset, part, cached=False, seconds=seconds) for m in stale]
    order = {job: i for i, job in enumerate(feature_jobs(study))}
    rows.sort(key=lambda r: order[(r["model"], r["dataset"], r["part"])])
    return pd.DataFrame(rows)


def _cost(study: StudyContext, dataset: str, part: str, models_: tuple[str, ...]) -> int:
    """A group's work in input pixels (images x each model's input area): an estimate that
    orders the groups and paces the ETA; the 224-px models dominate it as they dominate the time."""
    images = len(study.indices(dataset, part))
    if part == "reference":
        images -= sum(len(positions) for positions, _ in in_splits(study, dataset).values())
    return images * sum(study.spec(m).input_size ** 2 for m in models_)


def extract_group(study: StudyContext, dataset: str, part: str, models_: tuple[str, ...]) -> float:
    """Decode ``dataset``'s ``part`` once and extract ``models_`` from it (each cached with
    its record); returns seconds per model. Runs here or in a worker process."""
    source, indices = study.source(dataset), study.indices(dataset, part)
    started = time.perf_counter()
    found = in_splits(study, dataset) if part == "reference" else {}
    known = None
    if found:
        mask = np.zeros(len(indices), dtype=bool)
        for in_reference, _ in found.values():
            mask[in_reference] = True
        known = mask, [_taken(study, model, dataset, found)[mask] for model in models_]
    with study.extraction_threads():
        extract_shared([(feature_path(study, m, dataset, part), study.backbone(m)) for m in models_],
                       source, indices, lambda rest: _batches(study, dataset, rest),
                       batch_size=study.params.extract.batch_size, progress=study.progress,
                       params=study.record_params(), known=known,
                       keys=[key(study, m, dataset, part) for m in models_])
    return (time.perf_counter() - started) / len(models_)


def _taken(study: StudyContext, model: str, dataset: str, found: dict) -> np.ndarray:
    """(N_reference, D) ``model``'s features of ``dataset``'s reference samples, the rows of
    those in its splits (``found``, :func:`in_splits`) filled from the split files."""
    taken = None
    for split, (in_reference, in_part) in found.items():
        rows = features(study, model, dataset, split)["features"][in_part]
        if taken is None:
            taken = np.zeros((len(study.indices(dataset, "reference")), rows.shape[1]), dtype=rows.dtype)
        taken[in_reference] = rows
    return taken


def _row(study: StudyContext, model: str, dataset: str, part: str, *, cached: bool, seconds: float) -> dict:
    record = records.read_record(feature_path(study, model, dataset, part)) or {}
    shape = record.get("shape") or [len(study.indices(dataset, part)), None]
    return dict(model=model, dataset=dataset, part=part, n=shape[0], dim=shape[1], cached=cached,
                seconds=round(seconds, 3))


STAGE = Stage("extract", needs=("ports",), make=extract, notebook="02",
              describes="features of every model on every target split and PED reference sample")
