"""A study run: the five pipeline stages over one ``params/<study>.yaml``.

>>> study = Study.load("params/pocket.yaml")      # validated before any work
>>> study.groundtruth()   # 01: linear probe (+ fine-tuning table)
>>> study.extract()       # 02: features of every model on every target split + references
>>> study.score()         # 03: every metric, with and without PED
>>> study.evaluate()      # 04: rank correlations against each ground truth
>>> study.figures()       # 05: plots and tables in figures/<study>/

Every stage writes its results under ``results/<study>/`` with a provenance record, skips
work whose record matches (so a rerun takes seconds and an interrupted run resumes), and
returns a pandas DataFrame for the notebook to show. Independent cells (linear probes, score
cells, evaluation rows) run in ``processes`` worker processes; their results are assembled in
a fixed order, so every table is the same for any number of processes.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import time
import warnings
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits

from . import assets, data, evaluate as evaluation, metrics, models, ped, records
from .data.loader import chunk, decoded_batches
from .features import cached_features, extract_shared, feature_key
from .finetune_stage import FinetuneStage
from .groundtruth import linear_probe
from .parallel import WorkerPool
from .params import ParamsError, StudyParams, load_params
from .progress import notice, progress
from .scoring import MetricFailure, method_name, score_features

__all__ = ["Study", "find_params", "method_name", "PORT_TARGETS"]

log = logging.getLogger(__name__)

_SCORE_CODE = ("metrics", "ped", "_stats", "statistics", "validation", "scoring")
#: The targets the ports' agreement check draws its images from (the pocket targets).
PORT_TARGETS = ("flowers12", "cifar10", "mnist5k", "digits", "lfw")

_WORKER: "Study | None" = None  # the Study of a worker process (see Study.workers)


def _init_worker(params: StudyParams, mirror, params_path):
    global _WORKER
    _WORKER = Study(params, mirror=mirror, progress=False, params_path=params_path)


def _call_worker(method: str, *args):
    return getattr(_WORKER, method)(*args)


def _tie_saturated(group: pd.DataFrame) -> pd.DataFrame:
    """One (dataset, method)'s scores with every *saturated* score (flagged by the score stage:
    within ``SATURATION_RTOL`` of the metric's maximum) set to the largest of them, so that they
    tie exactly. Saturated scores differ only by rounding, and by more than ``TIE_RTOL`` from one
    CPU instruction set to another (H-score + PED of C - 1 = 9 on MNIST-5k); ranking by those
    bits would make the evaluation depend on the machine."""
    flagged = group.saturated.astype(bool).to_numpy() if "saturated" in group else None
    if flagged is None or not flagged.any():
        return group
    return group.assign(score=np.where(flagged, group.score[flagged].max(), group.score))


def _evaluation_row(scores: dict, accuracies: dict, options: dict, interval: bool) -> dict:
    return evaluation.evaluation_row(scores, accuracies, interval=interval, **options)


def _mean_interval(pairs: dict, options: dict) -> tuple[float, float]:
    return evaluation.bootstrap_mean_ci(pairs, **options)


def find_params(study: str | os.PathLike) -> Path:
    """The params file of ``study``: a path to a YAML file, or a study name looked up as
    ``params/<name>.yaml`` in the current folder and its parents."""
    path = Path(study)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    known: list[str] = []
    for folder in (Path.cwd(), *Path.cwd().parents):
        candidate = folder / "params" / f"{study}.yaml"
        if candidate.is_file():
            return candidate
        if not known and (folder / "params").is_dir():
            known = sorted(p.stem for p in (folder / "params").glob("*.yaml"))
    close = difflib.get_close_matches(str(study), known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else (f"; studies: {', '.join(known)}" if known else "")
    raise ParamsError(f"no study {str(study)!r} (no params/{study}.yaml in {Path.cwd()} or its parents){hint}")


class Study(FinetuneStage):
    """One study's params, data, models and cached results.

    Parameters
    ----------
    params : StudyParams
    mirror : path, optional
        Asset mirror (default: :func:`pedlib.assets.default_mirror`).
    progress : bool, default True
        Report progress (:mod:`pedlib.progress`).
    """

    def __init__(self, params: StudyParams, *, mirror=None, progress: bool = True,
                 params_path: str | os.PathLike | None = None):
        self.params = params
        self.mirror = mirror
        self.progress = progress
        self.params_path = params_path
        self._backbones: dict[str, models.Backbone] = {}
        self._sources: dict[str, data.ImageSource] = {}
        self._splits: dict[str, data.Split] = {}
        self._unavailable: set[str] = set()
        self._pool: WorkerPool | None = None

    @classmethod
    def load(cls, study: str | os.PathLike, **options) -> "Study":
        """Open a study by name (``"pocket"``: ``params/pocket.yaml`` found from the current
        folder or a parent, as from ``notebooks/``) or by the path of its params file."""
        path = find_params(study)
        return cls(load_params(path), params_path=path, **options)

    # ------------------------------------------------------------------ layout
    @property
    def output(self) -> Path:
        return self.params.output_dir

    @property
    def figures_dir(self) -> Path:
        return self.params.figures_dir

    @cached_property
    def models(self) -> list[str]:
        chosen = self.params.models
        return models.list_models(zoo=chosen) if isinstance(chosen, str) else list(chosen)

    @property
    def datasets(self) -> list[str]:
        return list(self.params.datasets)

    def pool(self, name: str) -> list[str]:
        """Models of the pool ``name`` (rules: family, source, trainable, models)."""
        rule = self.params.pools[name]
        chosen = []
        for model in self.models:
            spec = models.get_spec(model)
            if ("family" in rule and spec.family != rule["family"]) or \
               ("source" in rule and spec.source != rule["source"]) or \
               ("trainable" in rule and spec.trainable != rule["trainable"]) or \
               ("models" in rule and model not in rule["models"]):
                continue
            chosen.append(model)
        return chosen

    def spec(self, model: str) -> models.ModelSpec:
        """The model's spec, with ``extract.image_size`` applied (tests run paper models tiny)."""
        spec = models.get_spec(model)
        size = self.params.extract.image_size
        return spec if size is None else dataclasses.replace(spec, input_size=size)

    def workers(self) -> WorkerPool:
        """The study's worker processes (``processes``), started on first use and kept for
        the next stages; each holds a copy of this study."""
        if self._pool is None:
            self._pool = WorkerPool(self.params.processes, _init_worker,
                                    (self.params, self.mirror, self.params_path))
        return self._pool

    def close(self):
        """Stop the worker processes (also done at exit)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _record_params(self) -> dict:
        return self.params.as_dict()

    # ------------------------------------------------------------------ data
    def source(self, dataset: str) -> data.ImageSource:
        if dataset not in self._sources:
            options = self.params.datasets.get(dataset)
            kind = (options.type if options and options.type else dataset)
            kwargs = {"mirror": self.mirror, **(options.options if options else {})}
            root = options.root if options else self.params.reference.roots.get(dataset)
            if root:
                kwargs["root"] = str(Path(self.params.root) / root)
            self._sources[dataset] = data.create(kind, **kwargs)
        return self._sources[dataset]

    def split(self, dataset: str) -> data.Split:
        if dataset not in self._splits:
            options = self.params.datasets[dataset]
            self._splits[dataset] = data.split(
                self.source(dataset), seed=self.params.seed, test_fraction=options.test_fraction,
                train_per_class=options.train_per_class, test_per_class=options.test_per_class)
        return self._splits[dataset]

    def reference_indices(self, dataset: str) -> np.ndarray:
        """A seeded sample of ``reference.per_dataset`` images of ``dataset`` (any split)."""
        source = self.source(dataset)
        rng = np.random.default_rng([self.params.seed, int(records.content_key(dataset)[:8], 16)])
        size = min(self.params.reference.per_dataset, len(source))
        return np.sort(rng.choice(len(source), size=size, replace=False))

    def indices(self, dataset: str, part: str) -> np.ndarray:
        if part == "reference":
            return self.reference_indices(dataset)
        return self.split(dataset)[part]

    def _source_dataset(self, model: str) -> str | None:
        """The model's pretraining dataset when the study can read it (else None, warned once)."""
        source = models.get_spec(model).source
        if source not in data.available():
            return None
        if source not in self._sources:
            try:
                self.source(source)
            except (FileNotFoundError, OSError) as error:
                if source not in self._unavailable:
                    message = (f"PED reference: the source data {source!r} is not available ({error}); "
                               "using the other targets pooled instead")
                    if self.params.reference.require_source:
                        warnings.warn(message + ", which is not the paper's setting", UserWarning,
                                      stacklevel=2)
                    else:
                        log.info(message)
                    self._unavailable.add(source)
                return None
        return source

    # ------------------------------------------------------------------ features
    def feature_path(self, model: str, dataset: str, part: str) -> Path:
        return self.output / "features" / model / f"{dataset}-{part}.npz"

    def _feature_jobs(self) -> list[tuple[str, str, str]]:
        """(model, dataset, part) of every feature file the study needs, dataset-major: train
        and test of every target, then the reference samples PED's settings use."""
        jobs = [(model, dataset, part) for dataset in self.datasets for model in self.models
                for part in ("train", "test")]
        modes = {mode for _, mode, _ in self._variants() if mode != "none"}
        references = set()
        if len(self.datasets) > 1:
            for dataset in self.datasets:
                for model in self.models:
                    for mode in modes:
                        references.update((model, d, "reference")
                                          for d in self._reference_sets(model, dataset, mode))
        return jobs + sorted(references, key=lambda job: (job[1], job[0]))

    def features(self, model: str, dataset: str, part: str) -> dict:
        """Features of ``model`` on ``dataset``'s ``part`` (train, test, reference), cached."""
        return self._features(model, dataset, part)[0]

    def _features(self, model: str, dataset: str, part: str) -> tuple[dict, bool]:
        """(arrays, computed now) for one model; :meth:`extract` does many models at once."""
        indices = self.indices(dataset, part)
        with self._extraction_threads():
            return cached_features(self.feature_path(model, dataset, part), self.spec(model),
                                   self.source(dataset), indices,
                                   backbone=lambda: self._create_backbone(model),
                                   images=lambda: self._batches(dataset, indices),
                                   batch_size=self.params.extract.batch_size,
                                   progress=self.progress, params=self._record_params())

    @property
    def device(self) -> torch.device:
        return torch.device(self.params.extract.device)

    def _extraction_threads(self):
        """Extraction runs on ``extract.threads`` CPU threads: a float32 convolution's last
        bits depend on how its work is split, so a fixed count keeps features the same on
        every machine."""
        from .groundtruth.finetune import _threads

        return _threads(self.params.extract.threads)

    def _batches(self, dataset: str, indices: np.ndarray):
        """uint8 batches of ``dataset[indices]`` in ``extract.batch_size`` chunks: decoded on
        the GPU when extraction runs on CUDA and the images are JPEG files, else by
        ``extract.workers`` DataLoader processes (0: here)."""
        ex = self.params.extract
        return decoded_batches(self.source(dataset), chunk(indices, ex.batch_size), device=self.device,
                               workers=ex.workers, gpu_decode=ex.gpu_decode)

    def _create_backbone(self, model: str) -> models.Backbone:
        """The loaded model, kept until the stage ends (a stage uses each model many times)."""
        if model not in self._backbones:
            spec = self.spec(model)
            backbone = spec.factory(spec, mirror=self.mirror, device=self.params.extract.device)
            backbone.spec = spec
            if hasattr(backbone, "precision"):
                backbone.precision = self.params.extract.precision
            self._backbones[model] = backbone
        return self._backbones[model]

    def extract(self, parts: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Stage 02: the features of every (model, dataset, part) the study needs (``parts``:
        only these parts); returns a summary.

        Each (dataset, part) is decoded once and every model whose features are missing or
        stale runs on each decoded batch (per-model caches and records as with
        :meth:`features`, and the same batches, so the same features); when every model is
        fresh nothing is decoded. The ports are checked first (:meth:`check_ports`, cached):
        no feature of a port that disagrees with its original is ever computed.
        """
        self.check_ports()
        groups: dict[tuple[str, str], list[str]] = {}
        for model, dataset, part in self._feature_jobs():
            if parts is None or part in parts:
                groups.setdefault((dataset, part), []).append(model)
        rows, work = [], []
        for (dataset, part), group in groups.items():
            source, indices = self.source(dataset), self.indices(dataset, part)
            stale = [m for m in group if not records.is_fresh(
                self.feature_path(m, dataset, part), feature_key(self.spec(m), source, indices))]
            rows += [self._feature_row(m, dataset, part, cached=True, seconds=0.0) for m in group if m not in stale]
            if stale:
                work.append((dataset, part, tuple(stale)))
        if self.params.extract.parallel and self.device.type == "cpu" and len(work) > 1:
            # each (dataset, split) group in a worker process, on extract.threads threads there
            timings = self.workers().map(_call_worker, [("_extract_group", *job) for job in work],
                                         desc="extract", unit="feature sets", show=self.progress)
        else:
            timings = []
            bar = progress(total=len(work), desc="extract", unit="feature sets", enabled=self.progress)
            try:
                for dataset, part, stale in work:
                    bar.set_postfix_str(f"{dataset} {part}: {len(stale)} models")
                    timings.append(self._extract_group(dataset, part, stale))
                    bar.update()
            finally:
                bar.close()
                self._backbones.clear()
        for (dataset, part, stale), seconds in zip(work, timings):
            rows += [self._feature_row(m, dataset, part, cached=False, seconds=seconds) for m in stale]
        order = {job: i for i, job in enumerate(self._feature_jobs())}
        rows.sort(key=lambda r: order[(r["model"], r["dataset"], r["part"])])
        return pd.DataFrame(rows)

    def _extract_group(self, dataset: str, part: str, models_: tuple[str, ...]) -> float:
        """Decode ``dataset``'s ``part`` once and extract ``models_`` from it (each cached with
        its record); returns seconds per model. Runs here or in a worker process."""
        source, indices = self.source(dataset), self.indices(dataset, part)
        started = time.perf_counter()
        with self._extraction_threads():
            extract_shared([(self.feature_path(m, dataset, part), self._create_backbone(m)) for m in models_],
                           source, indices, lambda rest: self._batches(dataset, rest),
                           batch_size=self.params.extract.batch_size, progress=self.progress,
                           params=self._record_params())
        return (time.perf_counter() - started) / len(models_)

    def _feature_row(self, model: str, dataset: str, part: str, *, cached: bool, seconds: float) -> dict:
        record = records.read_record(self.feature_path(model, dataset, part)) or {}
        shape = record.get("shape") or [len(self.indices(dataset, part)), None]
        return dict(model=model, dataset=dataset, part=part, n=shape[0], dim=shape[1], cached=cached,
                    seconds=round(seconds, 3))

    # ------------------------------------------------------------------ ports
    def check_ports(self) -> pd.DataFrame | None:
        """Each ported model of the study against its original runtime
        (:mod:`pedlib.models.port_check`) on ``ports.images`` images of the pocket targets;
        cached. Raises :class:`~pedlib.models.ports.PortMismatch` for a port that fails its
        bar. None when the study has no ported model or ``ports: null``."""
        from .models.port_check import assess, check_port, resize_for

        names = self._ported_models()
        if not names:
            return None
        path = self.output / "ports.csv"
        key = self._ports_key()
        if records.is_fresh(path, key):
            return pd.read_csv(path, keep_default_na=False, na_values=[""])
        images = self._port_images()
        rows = []
        for name in progress(names, desc="port check", unit="models", enabled=self.progress):
            batch = np.concatenate([resize_for(name, x) for x in images])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                rows.append(assess(check_port(name, batch, mirror=self.mirror), mirror=self.mirror))
            for warning in caught:  # shown in the notebook and, as one line, in the terminal
                warnings.warn(str(warning.message), warning.category, stacklevel=2)
                notice(str(warning.message))
        table = pd.DataFrame(rows)
        records.write_csv(table, path)
        records.write_record(path, key, params=self._record_params(), seed=self.params.seed,
                             inputs={"targets": list(PORT_TARGETS), "images": int(len(table) and table.images[0])})
        return table

    def _ported_models(self) -> list[str]:
        from .models.ports import PORTS

        return [m for m in self.models if m in PORTS] if self.params.ports is not None else []

    def _port_image_indices(self) -> dict[str, np.ndarray]:
        """A seeded sample of ``ports.images`` images spread evenly over the pocket targets."""
        total = self.params.ports.images
        sizes = [total // len(PORT_TARGETS) + (i < total % len(PORT_TARGETS)) for i in range(len(PORT_TARGETS))]
        rng = np.random.default_rng([self.params.seed, 256])
        chosen = {}
        for target, size in zip(PORT_TARGETS, sizes):
            n = len(self.source(target))
            chosen[target] = np.sort(rng.choice(n, size=min(size, n), replace=False))
        return chosen

    def _port_images(self) -> list[np.ndarray]:
        return [self.source(t).load(i) for t, i in self._port_image_indices().items()]

    def _ports_key(self) -> str:
        from .models.ports import PORTS

        manifest = assets.manifest()
        return records.content_key(
            "ports", [(m, manifest[PORTS[m].source].sha256, manifest[PORTS[m].reference].sha256)
                      for m in self._ported_models()],
            {t: (self.source(t).content_id, i.tolist()) for t, i in self._port_image_indices().items()},
            records.code_version("models.ports", "models.port_check", "models.tflite", "models.nets",
                                 "models.torch_backbone", "data.images"))

    # ------------------------------------------------------------------ ground truth
    def groundtruth(self, *, recompute_finetune: bool = False) -> dict[str, pd.DataFrame]:
        """Stage 01: every ground truth the study evaluates against, in the order of
        ``evaluation.groundtruth`` (the first one orders the figures' best/worst models)."""
        out = {}
        for name in self.params.evaluation.groundtruth:
            if name == "linear_probe":
                out[name] = self.linear_probe()
            elif name == "finetune" and self.params.groundtruth.finetune.enabled:
                out[name] = self.finetune(recompute=recompute_finetune)
            elif name == "published":
                out[name] = self.published()
        return out

    def _linear_probe_key(self) -> str:
        probe = self.params.groundtruth.linear_probe
        jobs = [(m, d) for d in self.datasets for m in self.models]
        return records.content_key("linear_probe", probe, self.params.seed,
                                   [feature_key(self.spec(m), self.source(d), self.indices(d, p))
                                    for m, d in jobs for p in ("train", "test")],
                                   records.code_version("groundtruth.linear_probe", "validation"))

    def linear_probe(self) -> pd.DataFrame:
        """Linear-probe accuracy of every model on every target (cached per cell and as a
        table); the cells run in ``processes`` processes."""
        path = self.output / "groundtruth" / "linear_probe.csv"
        key = self._linear_probe_key()
        if records.is_fresh(path, key):
            return pd.read_csv(path)
        self.extract(parts=("train", "test"))
        jobs = [(m, d) for d in self.datasets for m in self.models]
        pending = [job for job in jobs if not records.is_fresh(self._probe_cell(*job), records.content_key(key, *job))]
        self.workers().map(_call_worker, [("_linear_probe_cell", key, *job) for job in pending],
                           desc="linear probe", unit="cells", show=self.progress)
        table = pd.concat([pd.read_csv(self._probe_cell(*job)) for job in jobs], ignore_index=True)
        records.write_csv(table, path)
        records.write_record(path, key, params=self._record_params(), seed=self.params.seed)
        return table

    def _probe_cell(self, model: str, dataset: str) -> Path:
        return self.output / "groundtruth" / "linear_probe" / f"{model}__{dataset}.csv"

    def _linear_probe_cell(self, key: str, model: str, dataset: str) -> None:
        """Fit one linear probe and write its cell file (runs in a worker process)."""
        probe = self.params.groundtruth.linear_probe
        train = self.features(model, dataset, "train")
        test = self.features(model, dataset, "test")
        started = time.perf_counter()
        result = linear_probe(train["features"], train["labels"], test["features"], test["labels"],
                              seed=self.params.seed, Cs=probe.Cs, folds=probe.folds,
                              max_iter=probe.max_iter, threads=probe.threads)
        frame = pd.DataFrame([dict(model=model, dataset=dataset, **result,
                                   seconds=time.perf_counter() - started)])
        cell = self._probe_cell(model, dataset)
        records.write_csv(frame, cell)
        records.write_record(cell, records.content_key(key, model, dataset), seed=self.params.seed)

    def published(self) -> pd.DataFrame:
        """Published accuracies (``groundtruth.published``: a CSV of model, dataset, accuracy)."""
        table = self.params.groundtruth.published
        if table is None:
            raise ParamsError(f"{self.params.study}: evaluation uses 'published' ground truth but "
                              "groundtruth.published names no table")
        from .groundtruth.published import load_published_accuracies

        return load_published_accuracies(Path(self.params.root) / table)

    def accuracies(self) -> dict[str, pd.DataFrame]:
        """Each ground truth as one accuracy per (model, dataset): columns model, dataset,
        accuracy, accuracy_std."""
        out = {}
        for name, table in self.groundtruth().items():
            if name == "finetune":
                grouped = table.groupby(["model", "dataset"], sort=False)["test_accuracy"]
                table = grouped.agg(accuracy="mean", accuracy_std="std").reset_index()
            elif "accuracy_std" not in table:
                table = table.assign(accuracy_std=np.nan)
            out[name] = table[["model", "dataset", "accuracy", "accuracy_std"]]
        return out

    # ------------------------------------------------------------------ scores
    def reference(self, model: str, target: str, mode: str) -> np.ndarray | None:
        """PED's reference features for ``model`` on ``target`` (see ReferenceParams)."""
        if mode == "none":
            return None
        sets = self._reference_sets(model, target, mode)
        if not sets:
            raise ParamsError(f"PED reference mode {mode!r} for {target!r} needs another dataset "
                              "in the study; use reference.mode: none")
        return np.concatenate([self.features(model, d, "reference")["features"] for d in sets])

    def scoring_reference(self, model: str, target: str, mode: str) -> np.ndarray | None:
        """The reference PED is scored with: :meth:`reference`, except in a one-target study,
        where PED standardises with the target's own statistics."""
        return self.reference(model, target, mode) if len(self.datasets) > 1 else None

    def _reference_sets(self, model: str, target: str, mode: str) -> list[str]:
        """The datasets whose reference samples make up PED's reference (see ReferenceParams)."""
        source = self._source_dataset(model)
        if mode == "source" and source is not None and source != target:
            return [source]
        return [d for d in self.datasets if d != target]

    def _variants(self) -> list[tuple[str, str, dict]]:
        """(variant, reference mode, PED options) of every PED setting the study scores."""
        base = {**ped.DEFAULTS, **self.params.ped}
        ref = self.params.reference
        variants = [("ped", ref.mode, base)]
        variants += [(f"ped:ref={mode}", mode, base) for mode in ref.ablation if mode != ref.mode]
        if self.params.sensitivity is not None:
            for nsigma in self.params.sensitivity.nsigma:
                for step in self.params.sensitivity.time_step:
                    if (nsigma, step) != (base["nsigma"], base["time_step"]):
                        variants.append((f"ped:nsigma={nsigma:g},time_step={step:g}", ref.mode,
                                         {**base, "nsigma": nsigma, "time_step": step}))
        return variants

    @property
    def scored_parts(self) -> tuple[str, ...]:
        """The splits whose features are scored (``score_split``: train, or train + test as
        the reference code did)."""
        return ("train",) if self.params.score_split == "train" else ("train", "test")

    def _score_key(self, model: str, dataset: str) -> str:
        parts = [*self.scored_parts] + (["reference"] if len(self.datasets) > 1 else [])
        inputs = [feature_key(self.spec(model), self.source(dataset), self.indices(dataset, part))
                  for part in self.scored_parts]
        for mode in dict.fromkeys(v[1] for v in self._variants()):  # ordered: keys never depend on hash order
            if mode != "none":
                inputs.append((mode, self._reference_keys(model, dataset, mode)))
        return records.content_key("scores", model, dataset, parts, inputs, self.params.metrics,
                                   self.params.metric_options, self._variants(),
                                   self.params.sensitivity, records.code_version(*_SCORE_CODE))

    def _reference_keys(self, model: str, target: str, mode: str) -> list[str]:
        spec = self.spec(model)
        return [feature_key(spec, self.source(d), self.reference_indices(d))
                for d in self._reference_sets(model, target, mode)]

    def score_problems(self) -> list[str]:
        """Every (model, dataset, metric) that cannot be scored at the study's sizes, each
        with its fix; checked before any work (sizes come from the splits, not the features)."""
        problems = []
        uses_ped = bool(self._variants())
        for dataset in self.datasets:
            labels = np.concatenate([self.source(dataset).labels[self.indices(dataset, part)]
                                     for part in self.scored_parts])
            counts = np.bincount(labels)
            counts = counts[counts > 0].tolist()
            checks = [(m, metrics.info(m).problem(len(labels), counts, 0, **self.params.metric_options.get(m, {})))
                      for m in self.params.metrics]
            if uses_ped:
                checks.append(("PED", metrics._registry.two_per_class(len(labels), counts, 0)))
            for metric, problem in checks:
                if problem:
                    problems.append(f"{dataset} ({len(labels)} scored images, smallest class "
                                    f"{min(counts)}): {metric}: {problem}")
        return problems

    def score_cell(self, model: str, dataset: str) -> pd.DataFrame:
        """Every metric on ``model``'s features of ``dataset`` (``scored_parts``), plain and with
        each PED variant; one row per (metric, variant). A metric that fails on this cell
        (a ValueError, e.g. a mixture that does not fit) is recorded as NaN with a warning."""
        parts = [self.features(model, dataset, part) for part in self.scored_parts]
        train = {name: np.concatenate([p[name] for p in parts]) for name in ("features", "labels")}
        variants = self._variants()
        references = {mode: self.scoring_reference(model, dataset, mode)
                      for mode in dict.fromkeys(v[1] for v in variants)}
        sensitivity = self.params.sensitivity.metrics if self.params.sensitivity else ()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MetricFailure)
            frame = score_features(train["features"], train["labels"], self.params.metrics,
                                   self.params.metric_options, variants, references, sensitivity,
                                   on_error="nan")
        for warning in caught:  # say which cell; pass every other warning on as it was
            if issubclass(warning.category, MetricFailure):
                warnings.warn(f"{model} on {dataset}: {warning.message}", MetricFailure, stacklevel=2)
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        frame.insert(0, "dataset", dataset)
        frame.insert(0, "model", model)
        return frame

    def _score_cell_path(self, model: str, dataset: str) -> Path:
        return self.output / "scores" / model / f"{dataset}.csv"

    def _score_and_write(self, model: str, dataset: str, key: str) -> None:
        """Score one cell and write its file (runs in a worker process)."""
        with threadpool_limits(limits=self.params.score_threads):
            frame = self.score_cell(model, dataset)
        cell = self._score_cell_path(model, dataset)
        records.write_csv(frame, cell)
        records.write_record(cell, key, params=self._record_params(), seed=self.params.seed)

    def score(self) -> pd.DataFrame:
        """Stage 03: scores of every (model, dataset), cached per cell; writes scores.csv.

        The sizes every metric (and PED) needs are checked for every cell first: a cell that
        cannot be scored stops the stage before any work, naming the cell and the fix."""
        problems = self.score_problems()
        if problems:
            raise ParamsError(f"params/{self.params.study}.yaml: {len(problems)} scoring problem(s) "
                              f"before any work: " + "; ".join(problems[:5])
                              + (" ..." if len(problems) > 5 else ""))
        jobs = [(m, d) for d in self.datasets for m in self.models]
        keys = {job: self._score_key(*job) for job in jobs}
        pending = [job for job in jobs if not records.is_fresh(self._score_cell_path(*job), keys[job])]
        if pending:
            self.extract(parts=tuple(self.scored_parts) + ("reference",))
        self.workers().map(_call_worker, [("_score_and_write", *job, keys[job]) for job in pending],
                           desc="score", unit="cells", show=self.progress)
        table = pd.concat([pd.read_csv(self._score_cell_path(*job), keep_default_na=False, na_values=[""])
                           for job in jobs], ignore_index=True)
        path = self.output / "scores.csv"
        records.write_csv(table, path)
        records.write_record(path, records.content_key(sorted(keys.values())),
                             params=self._record_params(), seed=self.params.seed)
        return table

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, scores: pd.DataFrame | None = None) -> pd.DataFrame:
        """Stage 04: per ground truth, pool, dataset and method: weighted tau (with a bootstrap
        interval over models for the plain and main-PED rankings) and the other correlations;
        plus the mean over datasets, whose interval resamples models jointly across datasets
        (:func:`pedlib.evaluate.bootstrap_mean_ci`). NaN scores (a metric that failed on a
        cell) leave that model out of that ranking. Rows run in ``processes`` processes."""
        if scores is None:
            scores = pd.read_csv(self.output / "scores.csv", keep_default_na=False, na_values=[""])
        ev = self.params.evaluation
        accuracies = self.accuracies()
        path = self.output / "evaluation.csv"
        key = records.content_key("evaluation", records.content_key(scores.to_csv()),
                                  {name: records.content_key(t.to_csv()) for name, t in accuracies.items()},
                                  ev, self.params.pools, self.models, self.params.seed,
                                  records.code_version("evaluate", "study"))
        if records.is_fresh(path, key):
            table = pd.read_csv(path, keep_default_na=False, na_values=[""])
            if ev.paper_table:
                self.paper_comparison(table)
            return table
        labels, jobs, means = [], [], {}
        options = dict(n_boot=ev.bootstrap, level=ev.level, seed=self.params.seed)
        groups = [(key, _tie_saturated(group))  # once, not once per ground truth and pool
                  for key, group in scores.groupby(["dataset", "method"], sort=False)]
        for truth_name, truth in accuracies.items():
            accuracy = {(r.model, r.dataset): r.accuracy for r in truth.itertuples()}
            for pool in self.params.pools:
                members = set(self.pool(pool))
                for (dataset, method), group in groups:
                    s = {r.model: r.score for r in group.itertuples()
                         if r.model in members and (r.model, dataset) in accuracy and np.isfinite(r.score)}
                    if len(s) < ev.min_models:
                        continue
                    a = {m: accuracy[(m, dataset)] for m in s}
                    first = group.iloc[0]
                    main = first.variant in ("plain", "ped")  # intervals for the main comparison only
                    labels.append(dict(groundtruth=truth_name, pool=pool, dataset=dataset, method=method,
                                       metric=first.metric, variant=first.variant,
                                       kind=metrics.info(first.metric).kind))
                    jobs.append((s, a))
                    if main:
                        means.setdefault((truth_name, pool, method), {})[dataset] = (s, a)
        rows = self.workers().map(_evaluation_row, [(s, a, options, lab["variant"] in ("plain", "ped"))
                                                    for (s, a), lab in zip(jobs, labels)],
                                  desc="evaluate", unit="rankings", show=self.progress)
        table = pd.DataFrame([{**lab, **row} for lab, row in zip(labels, rows)])
        if not table.empty:
            numeric = ["weighted_tau", "kendall_tau", "pearson", "spearman", "top1_relative_accuracy",
                       *[c for c in table.columns if c.endswith("_recall")], "n_models"]
            mean = (table.groupby(["groundtruth", "pool", "method", "metric", "variant", "kind"], sort=False)
                    [numeric].mean().reset_index().assign(dataset="mean"))
            # the interval of a mean covers the targets the mean averages: a target whose
            # ranking is undefined (every score tied, e.g. saturated) is left out of both
            undefined = {(lab["groundtruth"], lab["pool"], lab["method"], lab["dataset"])
                         for lab, row in zip(labels, rows) if not np.isfinite(row["weighted_tau"])}
            means = {group: {d: pair for d, pair in pairs.items() if (*group, d) not in undefined}
                     for group, pairs in means.items()}
            intervals = self.workers().map(_mean_interval, [(pairs, options) for pairs in means.values()]
                                           if ev.bootstrap else [], desc="evaluate (means)",
                                           unit="rankings", show=self.progress)
            bounds = dict(zip(means, intervals))
            mean["wtau_low"] = [bounds.get((r.groundtruth, r.pool, r.method), (np.nan, np.nan))[0] for r in mean.itertuples()]
            mean["wtau_high"] = [bounds.get((r.groundtruth, r.pool, r.method), (np.nan, np.nan))[1] for r in mean.itertuples()]
            table = pd.concat([table, mean], ignore_index=True)
        records.write_csv(table, path)
        records.write_record(path, key, params=self._record_params(), seed=self.params.seed)
        if ev.paper_table:
            self.paper_comparison(table)
        return table

    def paper_comparison(self, evaluation: pd.DataFrame | None = None) -> pd.DataFrame:
        """Our weighted tau next to the paper's (``evaluation.paper_table``), per method and
        dataset, with the difference and a mean row (over the datasets both have)."""
        from .groundtruth.published import load_published_wtau

        if evaluation is None:
            evaluation = pd.read_csv(self.output / "evaluation.csv", keep_default_na=False, na_values=[""])
        paper = load_published_wtau(Path(self.params.root) / self.params.evaluation.paper_table)
        truth = "published" if "published" in set(evaluation.groundtruth) else evaluation.groundtruth.iloc[0]
        ours = evaluation[(evaluation.groundtruth == truth) & (evaluation.pool == "all")
                          & (evaluation.dataset != "mean")][["method", "dataset", "weighted_tau"]]
        table = ours.merge(paper, on=["method", "dataset"], how="outer", suffixes=("_ours", "_paper"))
        table = table.rename(columns={"weighted_tau_ours": "ours", "weighted_tau_paper": "paper"})
        table = table[table.method.isin(set(paper.method)) | table.method.isin(
            [f"{m}+ped" for m in paper.method])]
        table["difference"] = table.ours - table.paper
        both = table.dropna(subset=["ours", "paper"])
        mean = both.groupby("method", sort=False)[["ours", "paper", "difference"]].mean().reset_index()
        table = pd.concat([table, mean.assign(dataset="mean")], ignore_index=True)
        path = self.output / "paper_comparison.csv"
        records.write_csv(table, path)
        records.write_record(path, records.content_key(table.to_csv()), params=self._record_params(),
                             seed=self.params.seed, inputs={"paper_table": self.params.evaluation.paper_table})
        return table

    # ------------------------------------------------------------------ figures
    def figures(self) -> dict[str, Path]:
        """Stage 05: every plot and table into ``figures/<study>/``; returns their paths."""
        from . import plots

        return plots.study_figures(self)

    # ------------------------------------------------------------------ keys
    def stage_keys(self) -> dict[str, str]:
        """The content key of every result the stages would write, computed without doing
        any work: features, linear probe, port check, score cells and fine-tuning jobs (the
        evaluation and figures are keyed by the content of those results). A key depends on
        inputs, params and code only, never on the process (tested under two hash seeds)."""
        keys = {f"features/{m}/{d}-{part}": feature_key(self.spec(m), self.source(d), self.indices(d, part))
                for m, d, part in self._feature_jobs()}
        keys["groundtruth/linear_probe"] = self._linear_probe_key()
        if self._ported_models():
            keys["ports"] = self._ports_key()
        keys.update({f"scores/{m}/{d}": self._score_key(m, d) for d in self.datasets for m in self.models})
        if self.params.groundtruth.finetune.enabled:
            keys.update({f"finetune/{job.id}": self.finetune_job_key(job) for job in self.finetune_jobs()})
        return keys
