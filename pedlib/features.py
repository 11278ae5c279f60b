"""Feature extraction with a content-addressed, resumable cache.

A feature file ``<root>/<model>/<dataset>-<part>.npz`` holds ``features`` (float32, (N, D)),
``labels`` (int codes) and ``indices`` (into the dataset). Its record's key hashes the model
(weights' sha256, input size, normalisation), the dataset's content id, the image indices and
the extraction code, so a file is reused exactly when it would be recomputed identically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from . import records
from .data import ImageSource
from .models import Backbone, ModelSpec, weights_id

__all__ = ["feature_key", "cached_features", "extract_shared"]


#: The code a feature file depends on, by runtime (editing other modules keeps caches valid).
_CODE = {"tflite": ("features", "models._spec", "models.tflite", "data.images"),
         "torch": ("features", "models._spec", "models.torch_backbone", "models.nets", "models.ports",
                   "models.hub", "models.paper", "data.images", "data.loader")}


def feature_key(spec: ModelSpec, source: ImageSource, indices: np.ndarray) -> str:
    """The cache key of ``spec``'s features on ``source[indices]`` (see the module docstring)."""
    return records.content_key("features", spec.name, weights_id(spec), spec.input_size, spec.channels,
                               spec.normalisation, source.content_id,
                               records.content_key(np.asarray(indices).tolist()),
                               records.code_version(*_CODE[spec.runtime]))


def cached_features(path: str | Path, spec: ModelSpec, source: ImageSource, indices: np.ndarray, *,
                    backbone: Callable[[], Backbone], images: Callable[[], np.ndarray | Iterable],
                    batch_size: int = 64, progress: bool = True, params=None) -> tuple[dict, bool]:
    """Load the features of ``source[indices]`` under ``spec`` from ``path``, or compute them.

    ``backbone`` and ``images`` are called only when the cache misses (loading a model and
    decoding images are the slow parts); ``images`` returns one uint8 array or an iterable of
    uint8 batches (streamed).

    Returns
    -------
    (arrays, computed) : dict with ``features``, ``labels``, ``indices``; and whether it was
    computed now.
    """
    key = feature_key(spec, source, indices)
    if records.is_fresh(path, key):
        return records.load_npz(path), False
    started = time.perf_counter()
    model = backbone()
    features = model.extract(images(), batch_size=batch_size, progress=progress,
                             desc=f"{spec.name} on {source.name}", total=len(indices))
    return _save(path, spec, source, indices, features, params, time.perf_counter() - started), True


def _save(path, spec: ModelSpec, source: ImageSource, indices, features: np.ndarray, params,
          seconds: float) -> dict:
    """Write a feature file and its record (the key is computed after loading the model,
    which may have fetched the weights it names)."""
    arrays = dict(features=features, labels=source.labels[indices], indices=np.asarray(indices))
    records.save_npz(path, **arrays)
    records.write_record(path, feature_key(spec, source, indices), params=params, inputs={
        "model": spec.name, "weights": spec.asset or spec.weights, "weights_id": weights_id(spec),
        "dataset": source.name, "dataset_content": source.content_id, "n_images": int(len(indices)),
        "classes": list(source.classes)}, extra={"seconds": seconds, "shape": list(features.shape)})
    return arrays


def extract_shared(jobs: Sequence[tuple[str | Path, Backbone]], source: ImageSource, indices: np.ndarray,
                   batches: Iterable, *, batch_size: int = 64, progress: bool = True,
                   params=None) -> list[dict]:
    """Features of several models from one pass over ``batches`` (decode once, feed every
    model), each saved to its own path with its own record, as :func:`cached_features` does.

    Parameters
    ----------
    jobs : list of (path, backbone)
    batches : iterable of uint8 (n, H, W, C) batches of ``source[indices]``, in order
        (arrays, or tensors already on the models' device).

    Returns
    -------
    list of dict (one per job): ``features``, ``labels``, ``indices``.
    """
    from .progress import progress as counter

    started = time.perf_counter()
    chunks: list[list[np.ndarray]] = [[] for _ in jobs]
    bar = counter(total=len(indices), desc=f"{source.name}: {len(jobs)} models", unit="img",
                  enabled=progress, leave=False)
    for images in batches:
        for chunk, (_, backbone) in zip(chunks, jobs):
            chunk.append(backbone.features_of(images))
        bar.update(len(images))
    bar.close()
    seconds = (time.perf_counter() - started) / max(len(jobs), 1)
    out = []
    for chunk, (path, backbone) in zip(chunks, jobs):
        features = backbone.finish(chunk)
        out.append(_save(path, backbone.spec, source, indices, features, params, seconds))
    return out
