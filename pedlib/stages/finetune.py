"""Stage: the fine-tuning ground truth of a study, as independent jobs.

``groundtruth.finetune.protocol`` picks the protocol:

* ``cell`` (pocket study, :mod:`pedlib.groundtruth.finetune`): one job per (model, dataset)
  that runs the grid search and the seeds' retrains on images held in memory;
* ``sweep`` (paper studies, :mod:`pedlib.groundtruth.sweep`): one job per (model, dataset,
  grid point) and one final job per (model, dataset, seed), which needs that cell's grid jobs.

Each job writes one result file with a provenance record and is skipped when that record
matches, so a sweep resumes after an interruption. ``pedlib finetune STUDY --makefile F``
writes a Makefile with one rule per pending job, which is how ``make -j4 finetune`` runs
jobs side by side; :meth:`Finetuning.table` runs the pending ones one after the other, and
:mod:`pedlib.cluster` submits them to SLURM.

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

from .. import models, records
from ..codegraph import code_version
from ..context import StudyContext
from ..groundtruth import FinetuneConfig, finetune_cell, sweep
from ..params import ParamsError
from ..progress import progress as counter
from .declaration import Stage

__all__ = ["STAGE", "FinetuneJob", "Finetuning", "finetuning", "finetune_table", "write_makefile"]


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


class Finetuning:
    """The fine-tuning jobs of one study: which there are, their keys, running them and
    assembling the table (``study.finetuning``)."""

    def __init__(self, study: StudyContext):
        self.study = study
        self._keys: dict = {}  # job id or (model, dataset) -> key: the paper sweep has 2,772 jobs

    # ------------------------------------------------------------------ settings
    @property
    def params(self):
        return self.study.params.groundtruth.finetune

    def models(self) -> list[str]:
        pool = models.list_models(trainable=True) if self.params.models == "trainable" else list(self.params.models)
        return [m for m in self.study.models if m in pool]

    def datasets(self) -> list[str]:
        chosen = self.params.datasets
        return self.study.datasets if chosen == "all" else [d for d in self.study.datasets if d in chosen]

    @property
    def protocol(self) -> str:
        return self.params.protocol

    def config(self) -> FinetuneConfig:
        """The ``cell`` protocol's settings."""
        return FinetuneConfig(**{f.name: getattr(self.params, f.name) for f in dataclasses.fields(FinetuneConfig)})

    def sweep_config(self) -> sweep.SweepConfig:
        """The ``sweep`` protocol's settings."""
        return sweep.SweepConfig(**{f.name: getattr(self.params, f.name) for f in dataclasses.fields(sweep.SweepConfig)})

    def table_path(self) -> Path:
        table = self.params.table
        return Path(self.study.params.root) / table if table else self.study.output / "groundtruth" / "finetune.csv"

    @property
    def folder(self) -> Path:
        return self.study.output / "groundtruth" / "finetune"

    # ------------------------------------------------------------------ jobs
    @cached_property
    def _jobs(self) -> dict[str, FinetuneJob]:
        jobs = {}
        cells = [(m, d) for d in self.datasets() for m in self.models()]
        if self.protocol == "cell":
            for model, dataset in cells:
                job = FinetuneJob(f"{model}/{dataset}/cell", model, dataset, "cell", 0,
                                  self.folder / f"{model}__{dataset}.csv")
                jobs[job.id] = job
            return jobs
        config = self.sweep_config()
        for model, dataset in cells:
            folder = self.folder / model / dataset
            grid = [FinetuneJob(f"{model}/{dataset}/grid-{k:02d}", model, dataset, "grid", k,
                                folder / f"grid-{k:02d}.json") for k in range(len(config.grid()))]
            jobs.update((job.id, job) for job in grid)
            for seed in config.seeds:
                job = FinetuneJob(f"{model}/{dataset}/final-seed{seed}", model, dataset, "final", seed,
                                  folder / f"final-seed{seed}.json", tuple(g.id for g in grid))
                jobs[job.id] = job
        return jobs

    def jobs(self) -> list[FinetuneJob]:
        """Every fine-tuning job of the study, in an order that runs each after its needs."""
        return list(self._jobs.values())

    def job(self, job_id: str) -> FinetuneJob:
        if job_id not in self._jobs:
            close = difflib.get_close_matches(job_id, list(self._jobs), n=3, cutoff=0.6)
            raise KeyError(f"no fine-tuning job {job_id!r} in study {self.study.params.study!r}"
                           + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")
                           + " (`pedlib finetune STUDY --list` lists them)")
        return self._jobs[job_id]

    # ------------------------------------------------------------------ keys
    def cell_key(self) -> str:
        """The ``cell`` table's key: the protocol, the models' weights and the exact splits,
        not code edits (the committed table must survive refactoring; its record keeps the
        code version)."""
        if "cell table" not in self._keys:
            jobs = [(m, d) for d in self.datasets() for m in self.models()]
            self._keys["cell table"] = records.content_key(
                "finetune", self.config().as_dict(), self.study.params.seed,
                [self._cell_inputs(m, d) for m, d in jobs])
        return self._keys["cell table"]

    def _cell_inputs(self, model: str, dataset: str) -> tuple:
        """What one cell's numbers depend on (besides the protocol, seed and code)."""
        split = self.study.split(dataset)
        return (model, models.get_spec(model).asset, self.study.source(dataset).content_id,
                split.train.tolist(), split.test.tolist())

    @cached_property
    def code(self) -> str:
        """The fine-tuning code's version: this module and every module it imports
        (:func:`pedlib.codegraph.code_version`)."""
        return code_version(__name__)

    def sweep_split(self, dataset: str) -> tuple[np.ndarray, np.ndarray]:
        """(fit, val) of ``dataset`` for the grid jobs."""
        return sweep.validation_split(self.study.source(dataset), self.study.split(dataset).train,
                                      self.sweep_config().val_fraction, self.study.params.seed)

    def job_key(self, job: FinetuneJob) -> str:
        """The content key of a job's result (inputs, settings and code)."""
        if job.id not in self._keys:
            self._keys[job.id] = self._job_key(job)
        return self._keys[job.id]

    def _job_key(self, job: FinetuneJob) -> str:
        seed = self.study.params.seed
        if job.kind == "cell":  # its own inputs only: adding a model or target keeps finished cells
            return records.content_key("finetune-cell", self.config().as_dict(), seed,
                                       self._cell_inputs(job.model, job.dataset), self.code)
        base = self._sweep_base_key(job.model, job.dataset)
        if job.kind == "grid":
            return records.content_key(base, "grid", self.sweep_config().grid()[job.index])
        split = self.study.split(job.dataset)
        return records.content_key(base, "final", job.index, [self.job_key(self._jobs[n]) for n in job.needs],
                                   records.content_key(split.train.tolist()),
                                   records.content_key(split.test.tolist()))

    def _sweep_base_key(self, model: str, dataset: str) -> str:
        """What every sweep job of (model, dataset) depends on."""
        if (model, dataset) not in self._keys:
            spec, source = self.study.spec(model), self.study.source(dataset)
            fit, val = self.sweep_split(dataset)
            self._keys[(model, dataset)] = records.content_key(
                "finetune-sweep", self.sweep_config().result_settings(), spec.name, models.weights_id(spec),
                spec.input_size, spec.normalisation, source.content_id, source.metric,
                records.content_key(fit.tolist()), records.content_key(val.tolist()),
                self.study.params.seed, self.code)
        return self._keys[(model, dataset)]

    # ------------------------------------------------------------------ running
    def job_done(self, job: FinetuneJob) -> bool:
        return records.is_fresh(job.path, self.job_key(job))

    def pending(self) -> list[FinetuneJob]:
        """Jobs whose result is missing or stale, or that need such a job."""
        pending: dict[str, FinetuneJob] = {}
        for job in self.jobs():
            if any(n in pending for n in job.needs) or not self.job_done(job):
                pending[job.id] = job
        return list(pending.values())

    def run_job(self, job: FinetuneJob | str, *, progress: bool | None = None) -> dict | pd.DataFrame:
        """Run one job unless its result is fresh; returns its result."""
        job = self.job(job) if isinstance(job, str) else job
        key = self.job_key(job)
        if records.is_fresh(job.path, key):
            return self.read(job)
        if job.kind == "cell":
            frame = self.run_cell(job.model, job.dataset)
            records.write_csv(frame, job.path)
            records.write_record(job.path, key, seed=self.study.params.seed, params=self.config().as_dict())
            return frame
        result = _run_sweep_job(self, job, key, self.study.progress if progress is None else progress)
        text = json.dumps(result, indent=1)
        records.atomic_write(job.path, lambda tmp: tmp.write_text(text))
        records.write_record(job.path, key, params=self.study.record_params(), seed=self.study.params.seed,
                             inputs={"job": job.id, "needs": list(job.needs)},
                             extra={"protocol": "pedlib.groundtruth.sweep (module docstring)"})
        sweep.remove_checkpoint(checkpoint_path(job))
        return result

    def read(self, job: FinetuneJob):
        return pd.read_csv(job.path) if job.kind == "cell" else json.loads(job.path.read_text())

    def status(self) -> tuple[list[tuple[str, FinetuneJob]], str | None]:
        """(state, job) of every job, and a note, without running anything and without the
        data where it is missing: states are ``done``, ``pending``, ``in table`` (a committed
        table that matches the study holds the cell) and, when the data is not here,
        ``present`` (its result file exists; its key cannot be checked without the data)."""
        jobs = self.jobs()
        path = self.table_path()
        study = self.study.params.study
        try:
            if self.protocol == "cell" and records.is_fresh(path, self.cell_key()):
                return ([("in table", job) for job in jobs],
                        f"{path} matches this study and holds every cell: the stages use it as it "
                        f"is; `make finetune STUDY={study}` recomputes the cells one by one")
            pending = {job.id for job in self.pending()}
        except OSError as error:  # FileNotFoundError: the data of a paper study is not on this machine
            return ([("present" if job.path.exists() else "pending", job) for job in jobs],
                    f"the data is not here, so results are not checked against it: {error}")
        return [("pending" if job.id in pending else "done", job) for job in jobs], None

    def table(self, *, recompute: bool = False) -> pd.DataFrame:
        """Fine-tuning accuracy, one row per (model, dataset, seed).

        ``cell`` protocol: uses the table at ``groundtruth.finetune.table`` when its record
        matches this study's protocol and splits; otherwise (or with ``recompute=True``) runs
        every unfinished job. ``sweep`` protocol: runs every unfinished job. Finished jobs are
        never redone.
        """
        path = self.table_path()
        study = self.study.params.study
        if self.protocol == "cell" and not recompute:
            if records.is_fresh(path, self.cell_key()):
                # the table's key leaves the code out (its record names the code that made it):
                # a committed table outlives refactoring, and tests/test_groundtruth.py
                # recomputes cells of it with today's code
                return pd.read_csv(path)
            if self.params.table:
                problem = "was made for other fine-tuning settings or splits than" if path.exists() \
                    else "does not exist, but is named in"
                raise ParamsError(f"the fine-tuning table {path} {problem} params/{study}.yaml; run "
                                  f"`make finetune STUDY={study}` (slow; see README) to compute it")
        try:
            for job in counter(self.pending(), desc="fine-tune", unit="jobs", enabled=self.study.progress):
                self.run_job(job)
        finally:
            self.study.release_backbones()
        return self.collect()

    def collect(self) -> pd.DataFrame:
        """Assemble the finished jobs into the fine-tuning table (and, for a sweep, the grid
        table ``finetune_grid.csv``); an unfinished job is an error naming it."""
        pending = self.pending()
        if pending:
            raise RuntimeError(f"{len(pending)} fine-tuning job(s) are not finished, e.g. "
                               f"{pending[0].id}; run `make finetune STUDY={self.study.params.study}`")
        jobs, path = self.jobs(), self.table_path()
        record = dict(params=self.study.record_params(), seed=self.study.params.seed)
        if self.protocol == "cell":
            table = pd.concat([self.read(j) for j in jobs], ignore_index=True)
            key, extra = self.cell_key(), {"code_version": self.code,
                                           "protocol": "pedlib.groundtruth.finetune (module docstring)"}
        else:
            results = pd.DataFrame([self.read(j) for j in jobs])
            grid = results[results.kind == "grid"].drop(columns=["kind", "test_score"], errors="ignore")
            table = (results[results.kind == "final"].rename(columns={"test_score": "test_accuracy"})
                     [["model", "dataset", "seed", "learning_rate", "weight_decay", "val_score",
                       "test_accuracy", "metric", "seconds"]])
            key = records.content_key([self.job_key(j) for j in jobs])
            extra = {"protocol": "pedlib.groundtruth.sweep (module docstring)",
                     "code_version": self.code}
            grid_path = path.with_name(path.stem + "_grid.csv")
            records.write_csv(grid, grid_path)
            records.write_record(grid_path, key, **record)
        records.write_csv(table, path)
        records.write_record(path, key, extra=extra, **record)
        return table

    def run_cell(self, model: str, dataset: str, config: FinetuneConfig | None = None,
                 *, seeds=None) -> pd.DataFrame:
        """Fine-tune ``model`` on ``dataset`` with the ``cell`` protocol (all of it, or only
        ``seeds``)."""
        config = config or self.config()
        if seeds is not None:
            config = dataclasses.replace(config, seeds=tuple(seeds))
        if not models.get_spec(model).trainable:
            raise ValueError(f"{model} is not trainable (runtime {models.get_spec(model).runtime})")
        backbone = self.study.backbone(model)
        source, split = self.study.source(dataset), self.study.split(dataset)
        train_x = backbone.preprocess(source.load(split.train))
        test_x = backbone.preprocess(source.load(split.test))
        rows = finetune_cell(backbone.module, train_x, source.labels[split.train], test_x,
                             source.labels[split.test], config, seed=self.study.params.seed)
        return pd.DataFrame([dict(model=model, dataset=dataset, **row) for row in rows])

    def makefile(self, path: str | Path, *, command: str | None = None) -> tuple[int, int]:
        """Write a Makefile with one rule per pending job (:func:`write_makefile`)."""
        return write_makefile(self, path, command=command)


def finetuning(study: StudyContext) -> Finetuning:
    """The study's fine-tuning jobs (one :class:`Finetuning` per context, which keeps their keys)."""
    return study.shared("finetuning", lambda: Finetuning(study))


def finetune_table(study: StudyContext, inputs=None, *, recompute: bool = False) -> pd.DataFrame | None:
    """The fine-tuning table (:meth:`Finetuning.table`) when the study evaluates against it,
    else None."""
    params = study.params
    if "finetune" not in params.evaluation.groundtruth or not params.groundtruth.finetune.enabled:
        return None
    return finetuning(study).table(recompute=recompute)


def checkpoint_path(job: FinetuneJob) -> Path:
    return job.path.with_suffix(".ckpt.pt")


def write_makefile(finetuning: Finetuning, path: str | Path, *, command: str | None = None) -> tuple[int, int]:
    """Write a Makefile with one rule per pending job (target ``all``); ``make -j N -f path
    all`` then runs N jobs at a time, each after the jobs it needs. Returns (pending jobs,
    all jobs)."""
    study = finetuning.study
    if study.params_path is None:
        raise ValueError("the study was not loaded from a params file (use Study.load)")
    command = command or f"{shlex.quote(sys.executable)} -m pedlib finetune"
    jobs, pending = finetuning.jobs(), finetuning.pending()
    by_id = {job.id: job for job in jobs}
    needed = {n for job in pending for n in job.needs}  # "all" wants the jobs nothing needs
    lines = [f"# generated by `pedlib finetune {study.params.study} --makefile`: "
             f"{len(pending)} of {len(jobs)} fine-tuning jobs pending",
             f"PEDLIB_FINETUNE ?= {command} {shlex.quote(str(Path(study.params_path).resolve()))}",
             ".PHONY: all " + " ".join(str(j.path) for j in pending),
             "all: " + " ".join(str(j.path) for j in pending if j.id not in needed), ""]
    for job in pending:
        needs = " ".join(str(by_id[n].path) for n in job.needs)
        lines += [f"{job.path}: {needs}".rstrip(), f"\t$(PEDLIB_FINETUNE) --job {job.id}", ""]
    text = "\n".join(lines)
    records.atomic_write(path, lambda tmp: tmp.write_text(text))
    return len(pending), len(jobs)


def _run_sweep_job(finetuning: Finetuning, job: FinetuneJob, key: str, progress: bool) -> dict:
    """Train and score one sweep job (grid point on the validation split, or a seed's final
    retrain at the best grid point on the test split), from its checkpoint if it has one."""
    study = finetuning.study
    config = finetuning.sweep_config()
    source = study.source(job.dataset)
    if job.kind == "grid":
        learning_rate, weight_decay = config.grid()[job.index]
        fit, evaluate_on = finetuning.sweep_split(job.dataset)
        seed, part = study.params.seed, "val"
    else:
        missing = [n for n in job.needs if not finetuning.job_done(finetuning.job(n))]
        if missing:
            raise RuntimeError(f"{job.id} needs the grid jobs {missing[:3]}"
                               f"{' ...' if len(missing) > 3 else ''} first (run "
                               f"`pedlib finetune {study.params.study}` or `make finetune`)")
        valid = [g for g in (finetuning.read(finetuning.job(n)) for n in job.needs) if not g["diverged"]]
        if not valid:
            raise RuntimeError(f"{job.id}: every grid point diverged")
        best = max(valid, key=lambda g: g["val_score"])  # max keeps the first of ties
        learning_rate, weight_decay = best["learning_rate"], best["weight_decay"]
        split = study.split(job.dataset)
        fit, evaluate_on, seed, part = split.train, split.test, job.index, "test"
    backbone = study.backbone(job.model)
    bar = counter(total=config.steps, desc=job.id, unit="steps", enabled=progress, leave=False)
    started = time.perf_counter()
    diverged = False
    try:
        module = sweep.train(backbone, source, fit, learning_rate=learning_rate, weight_decay=weight_decay,
                             seed=seed, config=config, checkpoint=checkpoint_path(job), key=key,
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


STAGE = Stage("finetune", needs=(), make=finetune_table, notebook="01",
              describes="the fine-tuning ground truth, as resumable jobs")
