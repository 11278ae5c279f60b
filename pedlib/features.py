"""Feature extraction with a content-addressed, resumable cache.

A feature file ``<root>/<model>/<dataset>-<part>.npz`` holds ``features`` (float32, (N, D)),
``labels`` (int codes) and ``indices`` (into the dataset). Its record's key hashes the model
(weights' sha256, input size, normalisation), the dataset's content id, the image indices and
the extraction code, so a file is reused exactly when it would be recomputed identically.
"""

from __future__ import annotations

from ._extras import require as _require

_require("torch", "pedlib.features")

import os
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from . import records
from .codegraph import code_version
from .data import ImageSource
from .models import Backbone, ModelSpec, weights_id

__all__ = ["feature_key", "cached_features", "extract_shared", "ExtractionInterrupted", "CHECKPOINT_SECONDS"]


def feature_key(spec: ModelSpec, source: ImageSource, indices: np.ndarray) -> str:
    """The cache key of ``spec``'s features on ``source[indices]`` (see the module docstring)."""
    return records.content_key("features", spec.name, weights_id(spec), spec.input_size, spec.channels,
                               spec.normalisation, source.content_id,
                               records.content_key(np.asarray(indices).tolist()),
                               code_version(__name__))


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
          seconds: float, resumed_from: int = 0, key: str | None = None, gathered: int = 0) -> dict:
    """Write a feature file and its record (the key, by default :func:`feature_key`, is computed
    after loading the model, which may have fetched the weights it names)."""
    arrays = dict(features=features, labels=source.labels[indices], indices=np.asarray(indices))
    records.save_npz(path, **arrays)
    records.write_record(path, key or feature_key(spec, source, indices), params=params, inputs={
        "model": spec.name, "weights": spec.asset or spec.weights, "weights_id": weights_id(spec),
        "dataset": source.name, "dataset_content": source.content_id, "n_images": int(len(indices)),
        "classes": list(source.classes)}, extra={"seconds": seconds, "shape": list(features.shape),
                                                **({"resumed_from": resumed_from} if resumed_from else {}),
                                                **({"gathered": gathered} if gathered else {})})
    return arrays


class ExtractionInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`extract_shared`: what was done is saved; the message says how much."""


#: How often a running extraction saves what it has (seconds; ``PEDLIB_CHECKPOINT_SECONDS``
#: overrides it): at most this much is lost when the process is killed; Ctrl-C saves all.
CHECKPOINT_SECONDS = 30.0


def _partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial.npz")


def _resume_point(jobs, keys: list[str], batch_size: int) -> tuple[int, list[list[np.ndarray]]]:
    """How many images every job has in its partial file (the least of them, whole batches)
    and those features, per job; 0 when any job has none that matches its key."""
    saved = []
    for (path, _), key in zip(jobs, keys):
        partial = _partial_path(Path(path))
        record = records.read_record(partial) or {}
        if not partial.exists() or record.get("key") != key:
            return 0, [[] for _ in jobs]
        saved.append(records.load_npz(partial)["features"])
    done = min(len(f) for f in saved)
    done -= done % batch_size  # resume on a batch boundary: the batches stay the same as unbroken
    return done, [[f[:done]] if done else [] for f in saved]


def _save_partial(jobs, chunks, keys: list[str], done: int) -> None:
    for (path, _), chunk, key in zip(jobs, chunks, keys):
        if chunk:
            partial = _partial_path(Path(path))
            records.save_npz(partial, features=np.concatenate(chunk))
            records.write_record(partial, key, extra={"images": done})


def extract_shared(jobs: Sequence[tuple[str | Path, Backbone]], source: ImageSource, indices: np.ndarray,
                   batches: Callable[[np.ndarray], Iterable], *, batch_size: int = 64,
                   progress: bool = True, params=None, checkpoint_seconds: float | None = None,
                   known: tuple[np.ndarray, Sequence[np.ndarray]] | None = None,
                   keys: Sequence[str] | None = None) -> list[dict]:
    """Features of several models from one pass over the images (decode once, feed every
    model), each saved to its own path with its own record, as :func:`cached_features` does.

    The pass is resumable: every ``checkpoint_seconds`` (default :data:`CHECKPOINT_SECONDS`)
    and on Ctrl-C, the features done so far are saved next to each path
    (``<path>.partial.npz``, keyed like the final file); a later call with the same jobs
    starts after them, on the same batch boundaries, so the result is the one an unbroken
    pass gives. Ctrl-C raises :class:`ExtractionInterrupted` after saving.

    Parameters
    ----------
    jobs : list of (path, backbone)
    batches : callable
        ``batches(indices)`` gives uint8 (n, H, W, C) batches of ``source[indices]`` in chunks
        of ``batch_size``, in order (arrays, or tensors already on the models' device).
    known : (mask, features), optional
        Features of some of the images computed before (the reference samples that a split's
        feature files hold): ``mask`` (len(indices),) bool marks those images and
        ``features[j]`` (mask.sum(), D) holds job j's features of them, in order. Only the
        other images are decoded and run; the record counts the known ones (``gathered``).
    keys : list of str, optional
        Each job's cache key; default :func:`feature_key` of its model on ``source[indices]``.
        A file made with ``known`` features must have a key that names where they came from.

    Returns
    -------
    list of dict (one per job): ``features``, ``labels``, ``indices``.
    """
    from .progress import progress as counter

    indices = np.asarray(indices)
    keys = [feature_key(backbone.spec, source, indices) for _, backbone in jobs] if keys is None else list(keys)
    mask = np.zeros(len(indices), dtype=bool) if known is None else np.asarray(known[0], dtype=bool)
    if mask.shape != indices.shape or (known is not None and len(known[1]) != len(jobs)):
        raise ValueError(f"known: a mask of {len(indices)} images and one array per job ({len(jobs)}) expected")
    todo = indices[~mask]  # the images to decode and run

    done, chunks = _resume_point(jobs, keys, batch_size)
    if checkpoint_seconds is None:
        checkpoint_seconds = float(os.environ.get("PEDLIB_CHECKPOINT_SECONDS", CHECKPOINT_SECONDS))
    resumed_from = done
    started = last_save = time.perf_counter()
    bar = counter(total=len(todo), desc=f"{source.name}: {len(jobs)} models", unit="img",
                  enabled=progress, leave=False)
    bar.update(done)
    try:
        for images in batches(todo[done:]) if done < len(todo) else ():
            computed = [backbone.features_of(images) for _, backbone in jobs]
            for chunk, features in zip(chunks, computed):  # all models or none: counts stay equal
                chunk.append(features)
            done += len(images)
            bar.update(len(images))
            if time.perf_counter() - last_save >= checkpoint_seconds and done < len(todo):
                _save_partial(jobs, chunks, keys, done)
                last_save = time.perf_counter()
    except KeyboardInterrupt:
        done = min(sum(len(part) for part in chunk) for chunk in chunks)  # the interrupt may split a batch
        _save_partial(jobs, chunks, keys, done)
        names = ", ".join(backbone.spec.name for _, backbone in jobs)
        raise ExtractionInterrupted(f"interrupted after {done}/{len(todo)} images of {source.name} "
                                    f"for {names}; rerun to resume") from None
    finally:
        bar.close()
    seconds = (time.perf_counter() - started) / max(len(jobs), 1)
    out = []
    for j, (chunk, (path, backbone)) in enumerate(zip(chunks, jobs)):
        if known is None:
            features = backbone.finish(chunk)
        else:
            given = np.asarray(known[1][j])
            features = np.empty((len(indices), given.shape[1]), dtype=given.dtype)
            features[mask] = given
            if len(todo):
                features[~mask] = backbone.finish(chunk)
        out.append(_save(path, backbone.spec, source, indices, features, params, seconds,
                         resumed_from=resumed_from, key=keys[j], gathered=int(mask.sum())))
        for leftover in (_partial_path(Path(path)), records.record_path(_partial_path(Path(path)))):
            leftover.unlink(missing_ok=True)
    return out
