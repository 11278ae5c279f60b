"""Pick a backbone for your own labelled images: extract, score with and without PED, rank.

>>> from pedlib.rank import rank_models
>>> result = rank_models("my_images/", ["mobilenet_v2_1.0_224", "cifar_resnet56"], out="ranking/")
>>> result.table          # model, score, score_ped, rank, seconds, ...

A ranking is a one-off study (:func:`rank_study`) of the folder: one target that is only scored
(no test split), the candidates as its models, the metric, and PED's reference (``--reference``
as ``reference.images``). It runs the study's own ``extract`` and ``score`` stages
(:mod:`pedlib.pipeline`): the same cache layout under ``<out>/cache``, the same checks, the same
plain + PED scoring (:func:`pedlib.scoring.score_features`).
"""

from __future__ import annotations

from ._extras import require as _require

_require("torch", "pedlib.rank (pedlib rank)")

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import data as datasets, metrics, pipeline, ped, records
from .context import StudyContext
from .models.hub import resolve
from .params import parse_params
from .stages import feature_store

__all__ = ["RECOMMENDED", "RankResult", "cluster_view", "load_images", "rank_models", "rank_study",
           "save_cluster_views"]

log = logging.getLogger(__name__)

RECOMMENDED = metrics.RECOMMENDED

#: What a ranking without ``reference`` does differently (warned, and kept in ranking.json).
NO_REFERENCE = ("no --reference: PED standardises each model's features with the target's own "
                "statistics, not with generic images from the models' pretraining data (the paper's setting)")

#: The dataset name of the ranked images in the one-off study.
TARGET = "target"


@dataclass
class RankResult:
    """The ranking, the one-off study that made it and where it was written."""

    table: pd.DataFrame
    study: StudyContext
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def source(self) -> datasets.ImageSource:
        return self.study.source(TARGET)

    @property
    def indices(self) -> np.ndarray:
        """The ranked images (indices into :attr:`source`)."""
        return self.study.indices(TARGET, "train")

    @property
    def dropped_classes(self) -> list[str]:
        return list(self.study.split(TARGET).dropped)

    @property
    def cache(self) -> Path:
        return self.study.output

    @property
    def ped_options(self) -> dict:
        return dict(self.study.params.ped)

    def features(self, model: str) -> np.ndarray:
        """The cached target features of ``model`` (float32, (n_images, D))."""
        return feature_store.read(self.study, model, TARGET, "train")["features"]

    def reference(self, model: str) -> np.ndarray | None:
        """PED's reference features of ``model`` (None without ``--reference``)."""
        return feature_store.scoring_reference(self.study, model, TARGET, self.study.params.reference.mode)


def cluster_view(result: RankResult, model: str):
    """Figure: ``model``'s class clusters before and after PED (2-D PCA of standardised features)."""
    from .plots import ped_trajectory

    x = result.features(model).astype(np.float64)
    labels = result.source.labels[result.indices]
    reference = result.reference(model)
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


def _kind(path: Path) -> str:
    if path.is_dir():
        return "imagefolder"
    if path.suffix.lower() == ".csv":
        return "csv"
    raise FileNotFoundError(f"{path} is neither an image folder nor a .csv file of path,label")


def load_images(path: str | Path, *, size: int = 224) -> datasets.ImageSource:
    """An ImageFolder (class per sub-folder) or a CSV of ``path,label`` as an ImageSource."""
    path = Path(path)
    return datasets.create(_kind(path), root=path, size=size)


def rank_study(data, backbones: dict, *, metric: str, reference=None, max_per_class: int | None = None,
               cache: Path, batch_size: int = 64, device: str = "cpu", seed: int = 0, mirror=None,
               progress: bool = True, ped_options: dict | None = None, workers: int | None = None) -> StudyContext:
    """The one-off study of a ranking: ``data`` as its one target (every image scored, at most
    ``max_per_class`` per class), ``backbones`` (name -> loaded model) as its models, ``metric``,
    and ``reference``'s images as every model's PED reference (PED on the target's own statistics
    without it); its results in ``cache``."""
    import torch

    if workers is None:
        from .parallel import default_processes

        workers = min(8, default_processes() - 1)
    data = Path(data).resolve()
    raw = {"study": "rank", "description": f"pedlib rank of {data}", "models": list(backbones), "seed": seed,
           "output": str(Path(cache).resolve()), "metrics": [metric], "ped": dict(ped_options or {}),
           "datasets": {TARGET: {"type": _kind(data), "root": str(data), "test_fraction": 0,
                                 "train_per_class": max_per_class}},
           "reference": {"mode": "none" if reference is None else "source", "ablation": [], "per_dataset": None,
                         "images": None if reference is None else str(Path(reference).resolve())},
           "sensitivity": None, "evaluation": {"groundtruth": []}, "ports": None, "processes": 1,
           "groundtruth": {"finetune": {"enabled": False}},
           "extract": {"batch_size": batch_size, "device": device, "workers": workers,
                       "threads": torch.get_num_threads()}}
    if reference is not None:
        _kind(Path(reference))  # neither a folder nor a CSV: said before any work
    params = parse_params(raw, where="pedlib rank", root=Path.cwd(), known_models=list(backbones))
    return StudyContext(params, mirror=mirror, progress=progress, backbones=backbones)


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
        The one-off study's results: features and scores (default ``<out>/cache`` or
        ``.pedlib-cache``); a run that was interrupted resumes from it.
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
    cache = Path(cache) if cache is not None else (out / "cache" if out else Path(".pedlib-cache"))
    _kind(Path(data))
    # resolve every name first: a typo fails before any image is read
    backbones = {name: resolve(name, mirror=mirror, device=device) for name in models}
    study = rank_study(data, backbones, metric=metric, reference=reference, max_per_class=max_per_class,
                       cache=cache, batch_size=batch_size, device=device, seed=seed, mirror=mirror,
                       progress=progress, ped_options=ped_options, workers=workers)
    study.split(TARGET)  # the dropped classes' warning and the class checks, before any work
    if reference is None:
        warnings.warn(NO_REFERENCE, UserWarning, stacklevel=2)
    results: dict = {}
    pipeline.run(study, "extract", results=results)  # the features' dims and seconds, even with fresh scores
    pipeline.run(study, "score", results=results)
    table = _ranking(results["score"]["scores"], results["extract"], metric, rank_by_ped)
    result = RankResult(table, study)
    if out is not None:
        result.paths = _write(result, out, metric=metric, data=str(data),
                              reference=None if reference is None else str(reference),
                              max_per_class=max_per_class, seed=seed, ped_options=dict(ped_options or {}),
                              rank_by_ped=rank_by_ped)
    return result


def _ranking(scores: pd.DataFrame, extracted: pd.DataFrame, metric: str, rank_by_ped: bool) -> pd.DataFrame:
    """One row per model from the score stage's table: the score without and with PED, their
    ranks, PED's steps, the feature dimension and the seconds (extraction and both scores)."""
    mine = scores[scores.metric == metric]
    plain = mine[mine.variant == "plain"].set_index("model")
    with_ped = mine[mine.variant == "ped"].set_index("model")
    target = extracted[extracted.part == "train"].set_index("model")
    extraction = extracted.groupby("model", sort=False).seconds.sum()
    models = list(dict.fromkeys(mine.model))
    table = pd.DataFrame({"model": models, "score": plain.score[models].to_numpy(),
                          "score_ped": with_ped.score[models].to_numpy(),
                          "ped_steps": with_ped.ped_steps[models].to_numpy().astype(int),
                          "dim": target.dim[models].to_numpy().astype(int),
                          "seconds": (plain.seconds[models] + with_ped.seconds[models]
                                      + extraction[models]).to_numpy()})
    table["rank"] = table.score.rank(ascending=False, method="min").astype(int)
    table["rank_ped"] = table.score_ped.rank(ascending=False, method="min").astype(int)
    key = "score_ped" if rank_by_ped else "score"
    table = table.sort_values([key, "model"], ascending=[False, True]).reset_index(drop=True)
    return table[["model", "score", "score_ped", "rank", "rank_ped", "ped_steps", "dim", "seconds"]]


def _write(result: RankResult, out: Path, **params) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    table = result.table
    summary = dict(params, n_images=int(len(result.indices)),
                   n_classes=int(len(np.unique(result.source.labels[result.indices]))),
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
