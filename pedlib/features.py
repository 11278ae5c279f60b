"""Feature extraction with a content-addressed, resumable cache.

A feature file ``<root>/<model>/<dataset>-<part>.npz`` holds ``features`` (float32, (N, D)),
``labels`` (int codes) and ``indices`` (into the dataset). Its record's key hashes the model
(weights' sha256, input size, normalisation), the dataset's content id, the image indices and
the extraction code, so a file is reused exactly when it would be recomputed identically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from . import records
from .data import ImageSource
from .models import Backbone, ModelSpec, weights_id

__all__ = ["feature_key", "cached_features"]


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
    key = feature_key(spec, source, indices)  # loading may have fetched the weights it names
    features = model.extract(images(), batch_size=batch_size, progress=progress,
                             desc=f"{spec.name} on {source.name}", total=len(indices))
    arrays = dict(features=features, labels=source.labels[indices], indices=np.asarray(indices))
    records.save_npz(path, **arrays)
    records.write_record(path, key, params=params, inputs={
        "model": spec.name, "weights": spec.asset or spec.weights, "weights_id": weights_id(spec),
        "dataset": source.name,
        "dataset_content": source.content_id, "n_images": int(len(indices)),
        "classes": list(source.classes)}, extra={"seconds": time.perf_counter() - started,
                                                   "shape": list(features.shape)})
    return arrays, True
