"""Pick a backbone for your own labelled images: extract, score with and without PED, rank.

>>> from pedlib.select import rank_models
>>> result = rank_models("my_images/", ["mobilenet_v2_1.0_224", "cifar_resnet56"], out="ranking/")
>>> result.table          # model, score, score_ped, rank, seconds, ...
"""

from __future__ import annotations

from ._extras import require as _require

_require("torch", "pedlib.select (pedlib rank)")

import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import data as datasets, metrics, ped, records
from .data._source import _cap_per_class
from .data.loader import decoded_batches
from .features import extract_shared, feature_key
from .models import extraction_batches
from .models.hub import resolve
from .progress import progress as counter

__all__ = ["RECOMMENDED", "RankResult", "cluster_view", "load_images", "rank_models", "save_cluster_views"]

log = logging.getLogger(__name__)

RECOMMENDED = metrics.RECOMMENDED

#: What a ranking without ``reference`` does differently (warned, and kept in ranking.json).
NO_REFERENCE = ("no --reference: PED standardises each model's features with the target's own "
                "statistics, not with generic images from the models' pretraining data (the paper's setting)")


@dataclass
class RankResult:
    """The ranking and where it was written."""

    table: pd.DataFrame
    source: datasets.ImageSource
    indices: np.ndarray
    dropped_classes: list[str]
    cache: Path
    references: dict[str, np.ndarray | None] = field(default_factory=dict, repr=False)
    ped_options: dict = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    def features(self, model: str) -> np.ndarray:
        """The cached target features of ``model`` (float32, (n_images, D))."""
        return records.load_npz(self.cache / _safe(model) / "target.npz")["features"]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:80]


def cluster_view(result: RankResult, model: str):
    """Figure: ``model``'s class clusters before and after PED (2-D PCA of standardised features)."""
    from .plots import ped_trajectory

    x = result.features(model).astype(np.float64)
    labels = result.source.labels[result.indices]
    reference = result.references.get(model)
    moved = ped.decline(x, labels, reference, **{**ped.DEFAULTS, **result.ped_options})
    rank = int(result.table.index[result.table.model == model][0]) + 1
    return ped_trajectory(moved, x, labels, reference, title=f"{model} (rank {rank} of {len(result.table)})")


def save_cluster_views(result: RankResult, out) -> dict[str, Path]:
    """Write the best and the worst model's :func:`cluster_view` to ``out/clusters_<rank>.png``."""
    import matplotlib.pyplot as plt

    out = Path(out)
    paths = {}
    for label, model in (("best", result.table.model.iloc[0]), ("worst", result.table.model.iloc[-1])):
        fig = cluster_view(result, model)
        path = out / f"clusters_{label}.png"
        records.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
        plt.close(fig)
        paths[model] = path
    return paths


def load_images(path: str | Path, *, size: int = 224) -> datasets.ImageSource:
    """An ImageFolder (class per sub-folder) or a CSV of ``path,label`` as an ImageSource."""
    path = Path(path)
    if path.is_dir():
        return datasets.create("imagefolder", root=path, size=size)
    if path.suffix.lower() == ".csv":
        return datasets.create("csv", root=path, size=size)
    raise FileNotFoundError(f"{path} is neither an image folder nor a .csv file of path,label")


def _select(source: datasets.ImageSource, max_per_class: int | None, seed: int):
    """Drop classes with a single image (no spread to measure) and cap the rest."""
    counts = np.bincount(source.labels, minlength=len(source.classes))
    dropped = [source.classes[c] for c in np.flatnonzero(counts < 2)]
    if dropped:
        warnings.warn(f"dropping {len(dropped)} class(es) with a single image: {dropped[:10]}",
                      UserWarning, stacklevel=3)
    keep = np.flatnonzero(counts[source.labels] >= 2)
    if len(np.unique(source.labels[keep])) < 2:
        raise ValueError(f"{source.name}: ranking needs at least 2 classes with 2 or more images "
                         f"each; found {int((counts >= 2).sum())}")
    rng = np.random.default_rng(seed)
    return _cap_per_class(keep, source.labels, max_per_class, rng), dropped


def rank_models(data, models, *, metric: str = RECOMMENDED["metric"], reference=None,
                max_per_class: int | None = None, out=None, cache=None, batch_size: int = 64,
                device: str = "cpu", seed: int = 0, mirror=None, progress: bool = True,
                ped_options: dict | None = None, rank_by_ped: bool = RECOMMENDED["ped"],
                workers: int | None = None) -> RankResult:
    """Rank ``models`` for the labelled images in ``data`` without fine-tuning any of them.

    Parameters
    ----------
    data : path
        An ImageFolder or a CSV of ``path,label``. Unreadable images are skipped and counted;
        classes with one image are dropped with a warning.
    models : list of str
        Pocket zoo names, torchvision names, ``timm:<name>`` or ``<arch>=<checkpoint>``.
    metric : str
        A feature metric (``pedlib.metrics.available("features")``).
    reference : path, optional
        Generic images (an ImageFolder or CSV; labels unused) for PED's standardisation;
        without it PED standardises with the target's own statistics.
    max_per_class : int, optional
        Use at most this many (seeded, random) images per class.
    out : path, optional
        Folder for ``ranking.csv``, ``ranking.json`` and ``ranking.png``.
    cache : path, optional
        Feature cache (default ``<out>/features`` or ``.pedlib-cache/features``); a run that
        was interrupted resumes from it.
    rank_by_ped : bool
        Order the table (and the written files) by the score with PED instead of without.
    workers : int, optional
        DataLoader processes decoding images (default: one per core beyond the first, at most
        8); on CUDA, JPEG files are decoded on the GPU instead. The images are decoded once
        and fed to every model whose features are not cached.

    Returns
    -------
    RankResult
        ``table`` sorted by rank, with columns model, score, score_ped, rank, rank_ped,
        ped_steps, dim, seconds (extraction + both scores).
    """
    if metric not in metrics.available(input="features"):
        metrics.get(metric)  # unknown: raises with close matches
        raise ValueError(f"{metric!r} scores probabilities; rank needs a feature metric: "
                         f"{metrics.available(input='features')}")
    models = list(models)
    if not models:
        raise ValueError("give at least one model")
    if len(set(models)) != len(models):
        raise ValueError("a model is listed twice")
    out = Path(out) if out is not None else None
    cache = Path(cache) if cache is not None else (out / "features" if out else Path(".pedlib-cache/features"))
    backbones = {}
    for name in models:  # resolve every name first: a typo fails before any image is read
        backbones[name] = resolve(name, mirror=mirror, device=device)
    # two runs on one cache at once take turns: the second waits, then reads the first's features
    with _exclusive(cache):
        return _rank(data, models, backbones, metric=metric, reference=reference, max_per_class=max_per_class,
                     out=out, cache=cache, batch_size=batch_size, device=device, seed=seed, progress=progress,
                     ped_options=ped_options, rank_by_ped=rank_by_ped, workers=workers)


def _rank(data, models: list[str], backbones: dict, *, metric: str, reference, max_per_class: int | None,
          out: Path | None, cache: Path, batch_size: int, device: str, seed: int, progress: bool,
          ped_options: dict | None, rank_by_ped: bool, workers: int | None) -> RankResult:
    """:func:`rank_models` once its arguments are checked, its models resolved and its cache held."""
    source = load_images(data)
    indices, dropped = _select(source, max_per_class, seed)
    labels = source.labels[indices]
    reference_source = load_images(reference) if reference is not None else None
    if reference is None:
        warnings.warn(NO_REFERENCE, UserWarning, stacklevel=3)
    options = dict(ped_options or {})
    if workers is None:
        from .parallel import default_processes

        workers = min(8, default_processes() - 1)

    def extract(kind: str, src, idx) -> dict[str, np.ndarray]:
        """Features of every model on ``src[idx]``: cached ones read, the rest from one decode."""
        paths = {name: cache / _safe(name) / f"{kind}.npz" for name in models}
        stale = [name for name in models
                 if not records.is_fresh(paths[name], feature_key(backbones[name].spec, src, idx))]
        if stale:
            extract_shared([(paths[name], backbones[name]) for name in stale], src, idx,
                           lambda rest: decoded_batches(src, extraction_batches(rest, batch_size), device=device,
                                                        workers=workers),
                           batch_size=batch_size, progress=progress)
        return {name: records.load_npz(paths[name])["features"] for name in models}

    started = time.perf_counter()
    target = extract("target", source, indices)
    references = {name: None for name in models}
    if reference_source is not None:
        references = extract("reference", reference_source, np.arange(len(reference_source)))
    extraction_seconds = (time.perf_counter() - started) / len(models)
    rows = []
    for name in counter(models, desc="rank", unit="models", enabled=progress):
        started = time.perf_counter()
        x = target[name].astype(np.float64)
        # One set of statistics for both scores: LogME's Gram matrix is computed once.
        statistics = ped.statistics(x, labels)
        entry = metrics.info(metric)
        plain = ped.score_translation(entry, statistics.translated(None), labels)
        moved = ped.motion(statistics, references[name], **{**ped.DEFAULTS, **options})
        with_ped = ped.score_translation(entry, statistics.translated(moved.offsets), labels)
        rows.append(dict(model=name, score=plain, score_ped=with_ped, ped_steps=moved.steps,
                         dim=x.shape[1], seconds=time.perf_counter() - started + extraction_seconds))
    table = pd.DataFrame(rows)
    table["rank"] = table.score.rank(ascending=False, method="min").astype(int)
    table["rank_ped"] = table.score_ped.rank(ascending=False, method="min").astype(int)
    key = "score_ped" if rank_by_ped else "score"
    table = table.sort_values([key, "model"], ascending=[False, True]).reset_index(drop=True)
    table = table[["model", "score", "score_ped", "rank", "rank_ped", "ped_steps", "dim", "seconds"]]
    result = RankResult(table, source, indices, dropped, cache, references, options)
    if out is not None:
        result.paths = _write(result, out, metric=metric, data=str(data), reference=reference,
                              max_per_class=max_per_class, seed=seed, ped_options=options,
                              rank_by_ped=rank_by_ped)
    return result


def _exclusive(cache: Path):
    """``cache``'s lock (``<cache>/.lock``), held for the run (:func:`pedlib.records.exclusive`)."""
    from filelock import FileLock

    cache.mkdir(parents=True, exist_ok=True)
    return records.exclusive(FileLock(cache / ".lock"), f"another pedlib rank uses {cache}; waiting for it to "
                             "finish (its features are then reused)")


def _write(result: RankResult, out: Path, **params) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    table = result.table
    summary = dict(params, n_images=int(len(result.indices)), n_classes=int(len(np.unique(result.source.labels[result.indices]))),
                   skipped_unreadable=list(result.source.skipped),
                   dropped_classes=result.dropped_classes, recommended=RECOMMENDED,
                   reference_note=None if params["reference"] is not None else NO_REFERENCE)
    paths = {"csv": out / "ranking.csv", "json": out / "ranking.json", "png": out / "ranking.png"}
    records.write_csv(table, paths["csv"])
    payload = json.dumps({"run": summary, "ranking": table.to_dict(orient="records")}, indent=1)
    records.atomic_write(paths["json"], lambda tmp: tmp.write_text(payload))
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.45 * len(table) + 1.5), sharey=True)
    for ax, column, color, title in ((axes[0], "score", "#8c8c8c", params["metric"]),
                                     (axes[1], "score_ped", "#d95f02", f"{params['metric']} + PED")):
        ax.barh(table.model[::-1], table[column][::-1], color=color)
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"{len(table)} models on {Path(params['data']).name} ({summary['n_images']} images, "
                 f"{summary['n_classes']} classes)", fontsize=10)
    fig.tight_layout()
    records.atomic_write(paths["png"], lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    for path in paths.values():
        records.write_record(path, records.content_key(table.to_csv()), params=params, seed=params["seed"])
    return paths
