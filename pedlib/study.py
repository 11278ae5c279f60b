"""A study run: the five pipeline stages over one ``params/<study>.yaml``.

>>> study = Study.load("params/pocket.yaml")      # validated before any work
>>> study.groundtruth()   # 01: linear probe (+ fine-tuning table)
>>> study.extract()       # 02: features of every model on every target split + references
>>> study.score()         # 03: every metric, with and without PED
>>> study.evaluate()      # 04: rank correlations against each ground truth
>>> study.figures()       # 05: plots and tables in figures/<study>/

Every stage writes its results under ``results/<study>/`` with a provenance record, skips
work whose record matches (so a rerun takes seconds and an interrupted run resumes), and
returns a pandas DataFrame for the notebook to show.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from . import data, evaluate as evaluation, models, ped, records
from .features import cached_features, feature_key
from .data.loader import chunk, iter_batches
from .finetune_stage import FinetuneStage
from .groundtruth import linear_probe
from .params import ParamsError, StudyParams, load_params
from .scoring import method_name, score_features

__all__ = ["Study", "find_params", "method_name"]

log = logging.getLogger(__name__)

_SCORE_CODE = ("metrics", "ped", "_stats", "validation", "scoring")


def find_params(study: str | os.PathLike) -> Path:
    """The params file of ``study``: a path to a YAML file, or a study name looked up as
    ``params/<name>.yaml`` in the current folder and its parents."""
    path = Path(study)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    for folder in (Path.cwd(), *Path.cwd().parents):
        candidate = folder / "params" / f"{study}.yaml"
        if candidate.is_file():
            return candidate
    raise ParamsError(f"no params/{study}.yaml in {Path.cwd()} or its parents; pass the path of "
                      "the study's params file")


class Study(FinetuneStage):
    """One study's params, data, models and cached results.

    Parameters
    ----------
    params : StudyParams
    mirror : path, optional
        Asset mirror (default ``$PEDLIB_ASSETS``).
    progress : bool, default True
        Show tqdm progress bars.
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

    def _features(self, model: str, dataset: str, part: str, images=None) -> tuple[dict, bool]:
        """(arrays, computed now); ``images`` gives the pixels when the cache misses (default:
        decoded batch by batch, in ``extract.workers`` processes)."""
        source = self.source(dataset)
        indices = self.indices(dataset, part)
        stream = partial(iter_batches, source, chunk(indices, self.params.extract.batch_size),
                         workers=self.params.extract.workers)
        return cached_features(self.feature_path(model, dataset, part), self.spec(model), source,
                               indices, backbone=lambda: self._create_backbone(model),
                               images=images or stream, batch_size=self.params.extract.batch_size,
                               progress=self.progress, params=self._record_params())

    def _create_backbone(self, model: str) -> models.Backbone:
        """The loaded model, kept until the stage ends (a stage uses each model many times)."""
        if model not in self._backbones:
            spec = self.spec(model)
            backbone = spec.factory(spec, mirror=self.mirror, device=self.params.extract.device)
            backbone.spec = spec
            self._backbones[model] = backbone
        return self._backbones[model]

    def extract(self) -> pd.DataFrame:
        """Stage 02: extract every (model, dataset, part) the study needs; returns a summary.

        Small splits (``extract.workers: 0``, at most 10,000 images) are decoded once and
        shared by every model; larger ones are streamed batch by batch for each model.
        """
        rows = []
        decoded: dict = {}

        def shared_images(dataset: str, part: str):
            indices = self.indices(dataset, part)
            if self.params.extract.workers or len(indices) > 10_000:
                return None  # stream (the default)

            def images():  # decoded only on a cache miss, then kept for the next models
                if (dataset, part) not in decoded:
                    decoded.clear()
                    decoded[(dataset, part)] = self.source(dataset).load(indices)
                return decoded[(dataset, part)]

            return images

        try:
            for model, dataset, part in tqdm(self._feature_jobs(), desc="extract", disable=not self.progress):
                started = time.perf_counter()
                arrays, computed = self._features(model, dataset, part, images=shared_images(dataset, part))
                rows.append(dict(model=model, dataset=dataset, part=part, n=len(arrays["labels"]),
                                 dim=arrays["features"].shape[1], cached=not computed,
                                 seconds=round(time.perf_counter() - started, 3)))
        finally:
            self._backbones.clear()
        return pd.DataFrame(rows)

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

    def linear_probe(self) -> pd.DataFrame:
        """Linear-probe accuracy of every model on every target (cached per study params)."""
        path = self.output / "groundtruth" / "linear_probe.csv"
        probe = self.params.groundtruth.linear_probe
        jobs = [(m, d) for d in self.datasets for m in self.models]
        key = records.content_key("linear_probe", probe, self.params.seed,
                                  [feature_key(self.spec(m), self.source(d), self.indices(d, p))
                                   for m, d in jobs for p in ("train", "test")],
                                  records.code_version("groundtruth.linear_probe", "validation"))
        if records.is_fresh(path, key):
            return pd.read_csv(path)
        cell_dir = self.output / "groundtruth" / "linear_probe"
        rows = []
        for model, dataset in tqdm(jobs, desc="linear probe", disable=not self.progress):
            train = self.features(model, dataset, "train")
            test = self.features(model, dataset, "test")
            cell = cell_dir / f"{model}__{dataset}.csv"
            cell_key = records.content_key(key, model, dataset)
            if records.is_fresh(cell, cell_key):
                rows.append(pd.read_csv(cell))
                continue
            started = time.perf_counter()
            result = linear_probe(train["features"], train["labels"], test["features"], test["labels"],
                                  seed=self.params.seed, Cs=probe.Cs, folds=probe.folds,
                                  max_iter=probe.max_iter, threads=probe.threads)
            frame = pd.DataFrame([dict(model=model, dataset=dataset, **result,
                                       seconds=time.perf_counter() - started)])
            records.write_csv(frame, cell)
            records.write_record(cell, cell_key, seed=self.params.seed)
            rows.append(frame)
        self._backbones.clear()
        table = pd.concat(rows, ignore_index=True)
        records.write_csv(table, path)
        records.write_record(path, key, params=self._record_params(), seed=self.params.seed)
        return table

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
        for mode in {v[1] for v in self._variants()}:
            if mode != "none":
                inputs.append((mode, self._reference_keys(model, dataset, mode)))
        return records.content_key("scores", model, dataset, parts, inputs, self.params.metrics,
                                   self.params.metric_options, self._variants(),
                                   self.params.sensitivity, records.code_version(*_SCORE_CODE))

    def _reference_keys(self, model: str, target: str, mode: str) -> list[str]:
        spec = self.spec(model)
        return [feature_key(spec, self.source(d), self.reference_indices(d))
                for d in self._reference_sets(model, target, mode)]

    def score_cell(self, model: str, dataset: str) -> pd.DataFrame:
        """Every metric on ``model``'s features of ``dataset`` (``scored_parts``), plain and with
        each PED variant; one row per (metric, variant)."""
        parts = [self.features(model, dataset, part) for part in self.scored_parts]
        train = {name: np.concatenate([p[name] for p in parts]) for name in ("features", "labels")}
        variants = self._variants()
        references = {mode: self.scoring_reference(model, dataset, mode)
                      for mode in dict.fromkeys(v[1] for v in variants)}
        sensitivity = self.params.sensitivity.metrics if self.params.sensitivity else ()
        frame = score_features(train["features"], train["labels"], self.params.metrics,
                               self.params.metric_options, variants, references, sensitivity)
        frame.insert(0, "dataset", dataset)
        frame.insert(0, "model", model)
        return frame

    def score(self) -> pd.DataFrame:
        """Stage 03: scores of every (model, dataset), cached per cell; writes scores.csv."""
        frames = []
        jobs = [(m, d) for d in self.datasets for m in self.models]
        keys = {}
        for model, dataset in tqdm(jobs, desc="score", disable=not self.progress):
            cell = self.output / "scores" / model / f"{dataset}.csv"
            keys[(model, dataset)] = key = self._score_key(model, dataset)
            if records.is_fresh(cell, key):
                frames.append(pd.read_csv(cell, keep_default_na=False, na_values=[""]))
                continue
            with threadpool_limits(limits=self.params.score_threads):
                frame = self.score_cell(model, dataset)
            records.write_csv(frame, cell)
            records.write_record(cell, key, params=self._record_params(), seed=self.params.seed)
            frames.append(frame)
        table = pd.concat(frames, ignore_index=True)
        path = self.output / "scores.csv"
        records.write_csv(table, path)
        records.write_record(path, records.content_key(sorted(keys.values())),
                             params=self._record_params(), seed=self.params.seed)
        return table

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, scores: pd.DataFrame | None = None) -> pd.DataFrame:
        """Stage 04: per ground truth, pool, dataset and method: weighted tau (with a bootstrap
        interval over models) and the other correlations; plus the mean over datasets."""
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
        rows = []
        for truth_name, truth in accuracies.items():
            accuracy = {(r.model, r.dataset): r.accuracy for r in truth.itertuples()}
            for pool in self.params.pools:
                members = self.pool(pool)
                for (dataset, method), group in scores.groupby(["dataset", "method"], sort=False):
                    group = group[group.model.isin(members)]
                    s = {r.model: r.score for r in group.itertuples() if (r.model, dataset) in accuracy}
                    if len(s) < ev.min_models:
                        continue
                    a = {m: accuracy[(m, dataset)] for m in s}
                    first = group.iloc[0]
                    with np.errstate(all="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        stats = evaluation.correlations(s, a)
                        # intervals for the main comparison (plain vs PED); the ablation and
                        # sensitivity variants are point estimates (1000 resamples each add up)
                        low, high = evaluation.bootstrap_ci(s, a, n_boot=ev.bootstrap, level=ev.level,
                                                            seed=self.params.seed) \
                            if ev.bootstrap and first.variant in ("plain", "ped") else (np.nan, np.nan)
                    rows.append(dict(groundtruth=truth_name, pool=pool, dataset=dataset, method=method,
                                     metric=first.metric, variant=first.variant, n_models=len(s),
                                     **stats, wtau_low=low, wtau_high=high))
        table = pd.DataFrame(rows)
        if not table.empty:
            numeric = ["weighted_tau", "kendall_tau", "pearson", "spearman",
                       "top1_relative_accuracy", "top3_recall"]
            mean = (table.groupby(["groundtruth", "pool", "method", "metric", "variant"], sort=False)
                    [numeric + ["n_models"]].mean().reset_index().assign(dataset="mean"))
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
