"""The fine-tuning ground truth of a study, as independent jobs.

``groundtruth.finetune.protocol`` picks the protocol:

* ``cell`` (pocket study, :mod:`pedlib.groundtruth.finetune`): one job per (model, dataset)
  that runs the grid search and the seeds' retrains on images held in memory;
* ``sweep`` (paper studies, :mod:`pedlib.groundtruth.sweep`): one job per (model, dataset,
  grid point) and one final job per (model, dataset, seed), which needs that cell's grid jobs.

Each job writes one result file with a provenance record and is skipped when that record
matches, so a sweep resumes after an interruption. ``pedlib finetune STUDY --makefile F``
writes a Makefile with one rule per pending job, which is how ``make -j4 finetune`` runs
jobs side by side; ``Study.finetune()`` runs the pending ones one after the other.

Job ids: ``<model>/<dataset>/cell``, ``<model>/<dataset>/grid-<k>``, ``<model>/<dataset>/final-seed<s>``.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import shlex
import sys
import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import models, records
from .groundtruth import FinetuneConfig, finetune_cell, sweep
from .params import ParamsError
from .progress import progress as counter

__all__ = ["FinetuneJob", "FinetuneStage"]


def _cell_code_objects() -> tuple:
    """What the ``cell`` protocol's results depend on: the protocol, the networks, how their
    weights are loaded and their input is made, and how targets are split."""
    from .data import _source, images
    from .groundtruth import finetune
    from .models import nets, pocket, ports, torch_backbone

    return (finetune, nets, ports, pocket.load_torch_module, pocket._torch, pocket._port,
            torch_backbone.TorchBackbone.__init__, torch_backbone.TorchBackbone.preprocess,
            images.to_model_input, images.decode, _source.split, _source._cap_per_class)

_SWEEP_CODE = ("groundtruth.sweep", "groundtruth.accuracy", "groundtruth.finetune", "data.loader",
               "data.images", "models.torch_backbone", "models.hub", "models.paper", "models.nets")


@dataclass(frozen=True)
class FinetuneJob:
    """One unit of fine-tuning work (see the module docstring)."""

    id: str
    model: str
    dataset: str
    kind: str  # "cell", "grid" or "final"
    index: int  # grid point (grid) or seed (final)
    path: Path
    needs: tuple[str, ...] = ()


class FinetuneStage:
    """Mixed into :class:`pedlib.study.Study`: the fine-tuning ground truth."""

    # ------------------------------------------------------------------ settings
    def finetune_models(self) -> list[str]:
        chosen = self.params.groundtruth.finetune.models
        pool = models.list_models(trainable=True) if chosen == "trainable" else list(chosen)
        return [m for m in self.models if m in pool]

    def finetune_datasets(self) -> list[str]:
        chosen = self.params.groundtruth.finetune.datasets
        return self.datasets if chosen == "all" else [d for d in self.datasets if d in chosen]

    @property
    def finetune_protocol(self) -> str:
        return self.params.groundtruth.finetune.protocol

    def finetune_config(self) -> FinetuneConfig:
        """The ``cell`` protocol's settings."""
        p = self.params.groundtruth.finetune
        return FinetuneConfig(**{f.name: getattr(p, f.name) for f in dataclasses.fields(FinetuneConfig)})

    def sweep_config(self) -> sweep.SweepConfig:
        """The ``sweep`` protocol's settings."""
        p = self.params.groundtruth.finetune
        return sweep.SweepConfig(**{f.name: getattr(p, f.name) for f in dataclasses.fields(sweep.SweepConfig)})

    def finetune_table_path(self) -> Path:
        table = self.params.groundtruth.finetune.table
        return Path(self.params.root) / table if table else self.output / "groundtruth" / "finetune.csv"

    @property
    def _finetune_dir(self) -> Path:
        return self.output / "groundtruth" / "finetune"

    # ------------------------------------------------------------------ jobs
    @cached_property
    def _jobs(self) -> dict[str, FinetuneJob]:
        jobs = {}
        cells = [(m, d) for d in self.finetune_datasets() for m in self.finetune_models()]
        if self.finetune_protocol == "cell":
            for model, dataset in cells:
                job = FinetuneJob(f"{model}/{dataset}/cell", model, dataset, "cell", 0,
                                  self._finetune_dir / f"{model}__{dataset}.csv")
                jobs[job.id] = job
            return jobs
        config = self.sweep_config()
        for model, dataset in cells:
            folder = self._finetune_dir / model / dataset
            grid = [FinetuneJob(f"{model}/{dataset}/grid-{k:02d}", model, dataset, "grid", k,
                                folder / f"grid-{k:02d}.json") for k in range(len(config.grid()))]
            jobs.update((job.id, job) for job in grid)
            for seed in config.seeds:
                job = FinetuneJob(f"{model}/{dataset}/final-seed{seed}", model, dataset, "final", seed,
                                  folder / f"final-seed{seed}.json", tuple(g.id for g in grid))
                jobs[job.id] = job
        return jobs

    def finetune_jobs(self) -> list[FinetuneJob]:
        """Every fine-tuning job of the study, in an order that runs each after its needs."""
        return list(self._jobs.values())

    def finetune_job(self, job_id: str) -> FinetuneJob:
        if job_id not in self._jobs:
            close = difflib.get_close_matches(job_id, list(self._jobs), n=3, cutoff=0.6)
            raise KeyError(f"no fine-tuning job {job_id!r} in study {self.params.study!r}"
                           + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")
                           + " (`pedlib finetune STUDY --list` lists them)")
        return self._jobs[job_id]

    def _cell_key(self) -> str:
        """Depends on the protocol, the models' weights and the exact splits, not on code edits
        (the committed table must survive refactoring; its record keeps the code version)."""
        if "cell table" not in self._job_keys:  # params do not change: compute once
            self._job_keys["cell table"] = self._compute_cell_key()
        return self._job_keys["cell table"]

    def _compute_cell_key(self) -> str:
        jobs = [(m, d) for d in self.finetune_datasets() for m in self.finetune_models()]
        return records.content_key("finetune", self.finetune_config().as_dict(), self.params.seed,
                                   [self._cell_inputs(m, d) for m, d in jobs])

    def _cell_inputs(self, model: str, dataset: str) -> tuple:
        """What one cell's numbers depend on (besides the protocol, seed and code)."""
        return (model, models.get_spec(model).asset, self.source(dataset).content_id,
                self.split(dataset).train.tolist(), self.split(dataset).test.tolist())

    @cached_property
    def _cell_code(self) -> str:
        return records.source_version(*_cell_code_objects())

    def _sweep_split(self, dataset: str) -> tuple[np.ndarray, np.ndarray]:
        """(fit, val) of ``dataset`` for the grid jobs."""
        return sweep.validation_split(self.source(dataset), self.split(dataset).train,
                                      self.sweep_config().val_fraction, self.params.seed)

    @cached_property
    def _job_keys(self) -> dict:
        return {}  # job id or (model, dataset) -> key: params do not change; the paper sweep has 2,772 jobs

    def finetune_job_key(self, job: FinetuneJob) -> str:
        """The content key of a job's result (inputs, settings and code)."""
        if job.id not in self._job_keys:
            self._job_keys[job.id] = self._compute_job_key(job)
        return self._job_keys[job.id]

    def _compute_job_key(self, job: FinetuneJob) -> str:
        if job.kind == "cell":  # its own inputs only: adding a model or target keeps finished cells
            return records.content_key("finetune-cell", self.finetune_config().as_dict(), self.params.seed,
                                       self._cell_inputs(job.model, job.dataset), self._cell_code)
        config = self.sweep_config()
        base = self._sweep_base_key(job.model, job.dataset)
        if job.kind == "grid":
            return records.content_key(base, "grid", config.grid()[job.index])
        split = self.split(job.dataset)
        return records.content_key(base, "final", job.index,
                                   [self.finetune_job_key(self._jobs[n]) for n in job.needs],
                                   records.content_key(split.train.tolist()),
                                   records.content_key(split.test.tolist()))

    def _sweep_base_key(self, model: str, dataset: str) -> str:
        """What every sweep job of (model, dataset) depends on."""
        if (model, dataset) not in self._job_keys:
            self._job_keys[(model, dataset)] = self._compute_sweep_base_key(model, dataset)
        return self._job_keys[(model, dataset)]

    def _compute_sweep_base_key(self, model: str, dataset: str) -> str:
        config = self.sweep_config()
        spec = self.spec(model)
        fit, val = self._sweep_split(dataset)
        return records.content_key("finetune-sweep", config.result_settings(), spec.name,
                                   models.weights_id(spec), spec.input_size, spec.normalisation,
                                   self.source(dataset).content_id, self.source(dataset).metric,
                                   records.content_key(fit.tolist()), records.content_key(val.tolist()),
                                   self.params.seed, records.code_version(*_SWEEP_CODE))

    def finetune_job_done(self, job: FinetuneJob) -> bool:
        return records.is_fresh(job.path, self.finetune_job_key(job))

    def run_finetune_job(self, job: FinetuneJob | str, *, progress: bool | None = None) -> dict | pd.DataFrame:
        """Run one job unless its result is fresh; returns its result."""
        job = self.finetune_job(job) if isinstance(job, str) else job
        key = self.finetune_job_key(job)
        if records.is_fresh(job.path, key):
            return self._read_job(job)
        if job.kind == "cell":
            frame = self.finetune_one(job.model, job.dataset)
            records.write_csv(frame, job.path)
            records.write_record(job.path, key, seed=self.params.seed, params=self.finetune_config().as_dict())
            return frame
        progress = self.progress if progress is None else progress
        result = self._run_sweep_job(job, key, progress)
        text = json.dumps(result, indent=1)
        records.atomic_write(job.path, lambda tmp: tmp.write_text(text))
        records.write_record(job.path, key, params=self._record_params(), seed=self.params.seed,
                             inputs={"job": job.id, "needs": list(job.needs)},
                             extra={"protocol": "pedlib.groundtruth.sweep (module docstring)"})
        sweep.remove_checkpoint(self._checkpoint(job))
        return result

    def _read_job(self, job: FinetuneJob):
        return pd.read_csv(job.path) if job.kind == "cell" else json.loads(job.path.read_text())

    def _checkpoint(self, job: FinetuneJob) -> Path:
        return job.path.with_suffix(".ckpt.pt")

    def _run_sweep_job(self, job: FinetuneJob, key: str, progress: bool) -> dict:
        config = self.sweep_config()
        source = self.source(job.dataset)
        if job.kind == "grid":
            learning_rate, weight_decay = config.grid()[job.index]
            fit, evaluate_on = self._sweep_split(job.dataset)
            seed, part = self.params.seed, "val"
        else:
            missing = [n for n in job.needs if not self.finetune_job_done(self._jobs[n])]
            if missing:
                raise RuntimeError(f"{job.id} needs the grid jobs {missing[:3]}"
                                   f"{' ...' if len(missing) > 3 else ''} first (run "
                                   f"`pedlib finetune {self.params.study}` or `make finetune`)")
            grid = [self._read_job(self._jobs[n]) for n in job.needs]
            valid = [g for g in grid if not g["diverged"]]
            if not valid:
                raise RuntimeError(f"{job.id}: every grid point diverged")
            best = max(valid, key=lambda g: g["val_score"])  # max keeps the first of ties
            learning_rate, weight_decay = best["learning_rate"], best["weight_decay"]
            split = self.split(job.dataset)
            fit, evaluate_on, seed, part = split.train, split.test, job.index, "test"
        backbone = self._create_backbone(job.model)
        bar = counter(total=config.steps, desc=job.id, unit="steps", enabled=progress, leave=False)
        started = time.perf_counter()
        diverged = False
        try:
            module = sweep.train(backbone, source, fit, learning_rate=learning_rate,
                                 weight_decay=weight_decay, seed=seed, config=config,
                                 checkpoint=self._checkpoint(job), key=key,
                                 on_step=lambda done: bar.update(done - bar.n))
            value = sweep.score(module, backbone, source, evaluate_on, config)
        except FloatingPointError as error:
            if job.kind == "final":
                raise
            warnings.warn(f"{job.id}: {error}; this grid point is not selectable", UserWarning, stacklevel=2)
            value, diverged = float("nan"), True
        finally:
            bar.close()
        return dict(job=job.id, model=job.model, dataset=job.dataset, kind=job.kind, seed=seed,
                    learning_rate=learning_rate, weight_decay=weight_decay, metric=source.metric,
                    **{f"{part}_score": value}, diverged=diverged,
                    **({"val_score": best["val_score"]} if job.kind == "final" else {}),
                    n_train=int(len(fit)), n_evaluated=int(len(evaluate_on)),
                    seconds=time.perf_counter() - started)

    # ------------------------------------------------------------------ running
    def finetune_status(self) -> tuple[list[tuple[str, FinetuneJob]], str | None]:
        """(state, job) of every job, and a note, without running anything and without the
        data where it is missing: states are ``done``, ``pending``, ``in table`` (a committed
        table that matches the study holds the cell) and, when the data is not here,
        ``present`` (its result file exists; its key cannot be checked without the data)."""
        jobs = self.finetune_jobs()
        path = self.finetune_table_path()
        try:
            if self.finetune_protocol == "cell" and records.is_fresh(path, self._cell_key()):
                return ([("in table", job) for job in jobs],
                        f"{path} matches this study and holds every cell: the stages use it as it "
                        f"is; `make finetune STUDY={self.params.study}` recomputes the cells one by one")
            pending = {job.id for job in self.pending_finetune_jobs()}
        except OSError as error:  # FileNotFoundError: the data of a paper study is not on this machine
            return ([("present" if job.path.exists() else "pending", job) for job in jobs],
                    f"the data is not here, so results are not checked against it: {error}")
        return [("pending" if job.id in pending else "done", job) for job in jobs], None

    def pending_finetune_jobs(self) -> list[FinetuneJob]:
        """Jobs whose result is missing or stale, or that need such a job."""
        pending: dict[str, FinetuneJob] = {}
        for job in self.finetune_jobs():
            if any(n in pending for n in job.needs) or not self.finetune_job_done(job):
                pending[job.id] = job
        return list(pending.values())

    def finetune(self, *, recompute: bool = False) -> pd.DataFrame:
        """Fine-tuning accuracy, one row per (model, dataset, seed).

        ``cell`` protocol: uses the table at ``groundtruth.finetune.table`` when its record
        matches this study's protocol and splits; otherwise (or with ``recompute=True``) runs
        every unfinished job. ``sweep`` protocol: runs every unfinished job. Finished jobs are
        never redone.
        """
        path = self.finetune_table_path()
        if self.finetune_protocol == "cell" and not recompute:
            key = self._cell_key()
            if records.is_fresh(path, key):
                made_by = (records.read_record(path) or {}).get("code_version")
                if made_by != self._cell_code:
                    warnings.warn(f"{path} was made by fine-tuning code {made_by}, now {self._cell_code}; "
                                  "run `make finetune` to refresh it", UserWarning, stacklevel=2)
                return pd.read_csv(path)
            if self.params.groundtruth.finetune.table:
                problem = ("was made for other fine-tuning settings or splits than"
                           if path.exists() else "does not exist, but is named in")
                raise ParamsError(f"the fine-tuning table {path} {problem} params/{self.params.study}"
                                  f".yaml; run `make finetune STUDY={self.params.study}` (slow; see "
                                  "README) to compute it")
        try:
            for job in counter(self.pending_finetune_jobs(), desc="fine-tune", unit="jobs", enabled=self.progress):
                self.run_finetune_job(job)
        finally:
            self._backbones.clear()
        return self.collect_finetune()

    def collect_finetune(self) -> pd.DataFrame:
        """Assemble the finished jobs into the fine-tuning table (and, for a sweep, the grid
        table ``finetune_grid.csv``); an unfinished job is an error naming it."""
        pending = self.pending_finetune_jobs()
        if pending:
            raise RuntimeError(f"{len(pending)} fine-tuning job(s) are not finished, e.g. "
                               f"{pending[0].id}; run `make finetune STUDY={self.params.study}`")
        jobs = self.finetune_jobs()
        path = self.finetune_table_path()
        if self.finetune_protocol == "cell":
            table = pd.concat([self._read_job(j) for j in jobs], ignore_index=True)
            key, extra = self._cell_key(), {"code_version": self._cell_code,
                                            "protocol": "pedlib.groundtruth.finetune (module docstring)"}
        else:
            results = pd.DataFrame([self._read_job(j) for j in jobs])
            grid = results[results.kind == "grid"].drop(columns=["kind", "test_score"], errors="ignore")
            table = (results[results.kind == "final"]
                     .rename(columns={"test_score": "test_accuracy"})
                     [["model", "dataset", "seed", "learning_rate", "weight_decay", "val_score",
                       "test_accuracy", "metric", "seconds"]])
            key = records.content_key([self.finetune_job_key(j) for j in jobs])
            extra = {"protocol": "pedlib.groundtruth.sweep (module docstring)",
                     "code_version": records.code_version(*_SWEEP_CODE)}
            grid_path = path.with_name(path.stem + "_grid.csv")
            records.write_csv(grid, grid_path)
            records.write_record(grid_path, key, params=self._record_params(), seed=self.params.seed)
        records.write_csv(table, path)
        records.write_record(path, key, params=self._record_params(), seed=self.params.seed, extra=extra)
        return table

    def finetune_makefile(self, path: str | Path, *, command: str | None = None) -> tuple[int, int]:
        """Write a Makefile with one rule per pending job (target ``all``); ``make -j N -f
        path all`` then runs N jobs at a time, each after the jobs it needs. Returns (pending
        jobs, all jobs)."""
        if self.params_path is None:
            raise ValueError("the study was not loaded from a params file (use Study.load)")
        command = command or f"{shlex.quote(sys.executable)} -m pedlib finetune"
        jobs = self.finetune_jobs()
        pending = self.pending_finetune_jobs()
        needed = {n for job in pending for n in job.needs}  # "all" wants the jobs nothing needs
        lines = [f"# generated by `pedlib finetune {self.params.study} --makefile`: "
                 f"{len(pending)} of {len(jobs)} fine-tuning jobs pending",
                 f"PEDLIB_FINETUNE ?= {command} {shlex.quote(str(Path(self.params_path).resolve()))}",
                 ".PHONY: all " + " ".join(str(j.path) for j in pending),
                 "all: " + " ".join(str(j.path) for j in pending if j.id not in needed), ""]
        for job in pending:
            needs = " ".join(str(self._jobs[n].path) for n in job.needs)
            lines += [f"{job.path}: {needs}".rstrip(), f"\t$(PEDLIB_FINETUNE) --job {job.id}", ""]
        text = "\n".join(lines)
        records.atomic_write(path, lambda tmp: tmp.write_text(text))
        return len(pending), len(jobs)

    def finetune_one(self, model: str, dataset: str, config: FinetuneConfig | None = None,
                     *, seeds=None) -> pd.DataFrame:
        """Fine-tune ``model`` on ``dataset`` with the ``cell`` protocol (all of it, or only
        ``seeds``)."""
        config = config or self.finetune_config()
        if seeds is not None:
            config = dataclasses.replace(config, seeds=tuple(seeds))
        spec = models.get_spec(model)
        if not spec.trainable:
            raise ValueError(f"{model} is not trainable (runtime {spec.runtime})")
        backbone = self._create_backbone(model)
        source, split = self.source(dataset), self.split(dataset)
        train_x = backbone.preprocess(source.load(split.train))
        test_x = backbone.preprocess(source.load(split.test))
        rows = finetune_cell(backbone.module, train_x, source.labels[split.train], test_x,
                             source.labels[split.test], config, seed=self.params.seed)
        return pd.DataFrame([dict(model=model, dataset=dataset, **row) for row in rows])
