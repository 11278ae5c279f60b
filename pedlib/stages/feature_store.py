"""Where a study's feature files live, what keeps each fresh, and reading them: what the
extract stage writes (``results/<study>/features/<model>/<dataset>-<part>.npz``) and the
stages after it read (the score cells, the linear probe, the figures' PED trajectories), and
PED's reference features for a (model, target) cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import records
from ..context import StudyContext
from ..features import feature_key
from ..params import ParamsError
from .variants import reference_sets, variants

__all__ = ["feature_path", "folder_name", "key", "in_splits", "split_parts", "feature_jobs", "read", "reference",
           "scoring_reference"]


def folder_name(model: str) -> str:
    """``model`` as one folder name: a checkpoint model's ``arch=/path/to/w.pth`` has slashes."""
    return "".join(c if c.isalnum() or c in "._-=" else "_" for c in model)[:120]


def feature_path(study: StudyContext, model: str, dataset: str, part: str) -> Path:
    return study.output / "features" / folder_name(model) / f"{dataset}-{part}.npz"


def split_parts(study: StudyContext, dataset: str) -> tuple[str, ...]:
    """The splits of a target: train and test, or train alone for one without a test split."""
    return ("train",) if study.params.datasets[dataset].test_fraction == 0 else ("train", "test")


def key(study: StudyContext, model: str, dataset: str, part: str) -> str:
    """The cache key of one feature file (:func:`pedlib.features.feature_key`); a reference
    file's also names the split files it takes features from (:func:`in_splits`). Computed once
    per context (a rerun's stages ask for each key many times)."""
    known = study.shared("feature keys", dict)
    if (model, dataset, part) not in known:
        base = feature_key(study.spec(model), study.source(dataset), study.indices(dataset, part))
        found = in_splits(study, dataset) if part == "reference" else {}
        known[model, dataset, part] = base if not found else records.content_key(
            base, {p: key(study, model, dataset, p) for p in sorted(found)})
    return known[model, dataset, part]


def in_splits(study: StudyContext, dataset: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Where ``dataset``'s reference samples lie in its train and test splits, when it is a
    target (else none): ``{part: (positions in the reference, positions in the part)}``.

    Their features are taken from those splits' files instead of being computed again (the
    pocket study's reference samples are 724 of 1,000 split images). A model computes an image's
    features the same in any batch where its convolutions run in oneDNN
    (:mod:`pedlib.models.inference`), so the file is the one a separate pass would give there.
    """
    if dataset not in study.datasets:
        return {}
    reference = study.indices(dataset, "reference")
    found = {}
    for part in split_parts(study, dataset):
        _, in_reference, in_part = np.intersect1d(reference, study.indices(dataset, part), assume_unique=True,
                                                  return_indices=True)
        if len(in_reference):
            found[part] = (in_reference, in_part)
    return found


def feature_jobs(study: StudyContext) -> list[tuple[str, str, str]]:
    """(model, dataset, part) of every feature file the study needs, dataset-major: train
    and test of every target, then the reference samples PED's settings use."""
    jobs = [(model, dataset, part) for dataset in study.datasets for model in study.models
            for part in split_parts(study, dataset)]
    modes = {mode for _, mode, _ in variants(study) if mode != "none"}
    references = set()
    if _has_reference(study):
        for dataset in study.datasets:
            for model in study.models:
                for mode in modes:
                    references.update((model, d, "reference") for d in reference_sets(study, model, dataset, mode))
    return jobs + sorted(references, key=lambda job: (job[1], job[0]))


def read(study: StudyContext, model: str, dataset: str, part: str) -> dict:
    """The extract stage's features of ``model`` on ``dataset``'s ``part``: ``features`` (N, D)
    float32, ``labels``, ``indices``. A file that is missing or stale is an error naming it (the
    runner runs the extract stage before any stage that reads features)."""
    path = feature_path(study, model, dataset, part)
    if not records.is_fresh(path, key(study, model, dataset, part)):
        raise records.CacheError(f"{path} is missing or stale: the extract stage makes it "
                                 f"(`pedlib.pipeline.run(study, 'extract')`)")
    return records.load_npz(path)


def reference(study: StudyContext, model: str, target: str, mode: str) -> np.ndarray | None:
    """PED's reference features for ``model`` on ``target`` under reference ``mode`` (see
    ``ReferenceParams``): the reference samples of every dataset of
    :func:`~pedlib.stages.variants.reference_sets`, stacked; None for ``mode="none"``."""
    if mode == "none":
        return None
    sets = reference_sets(study, model, target, mode)
    if not sets:
        raise ParamsError(f"PED reference mode {mode!r} for {target!r} needs another dataset "
                          "in the study; use reference.mode: none")
    return np.concatenate([read(study, model, d, "reference")["features"] for d in sets])


def scoring_reference(study: StudyContext, model: str, target: str, mode: str) -> np.ndarray | None:
    """The reference PED is scored with: :func:`reference`, except in a one-target study without
    ``reference.images``, where PED standardises with the target's own statistics."""
    return reference(study, model, target, mode) if _has_reference(study) else None


def _has_reference(study: StudyContext) -> bool:
    return len(study.datasets) > 1 or bool(study.params.reference.images)
