"""The context of a study: one ``params/<study>.yaml`` with its paths, data sources and splits,
model specs and loaded backbones, and worker processes. It imports no stage: the stages
(:mod:`pedlib.stages`) take a context and the runner (:mod:`pedlib.pipeline`) runs them;
:class:`pedlib.study.Study` is this context with one method per stage.

Independent cells (linear probes, score cells, evaluation rows) run in ``processes`` worker
processes (:meth:`StudyContext.map`), each holding its own copy of the context; their results
are assembled in a fixed order, so every table is the same for any number of processes.
"""

from __future__ import annotations

from ._extras import require as _require

_require("torch", "pedlib.context")

import contextlib
import dataclasses
import difflib
import logging
import os
import warnings
from functools import cached_property
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from . import data, models, records
from .parallel import WorkerPool, torch_threads
from .progress import notice
from .params import ParamsError, StudyParams, load_params

__all__ = ["StudyContext", "find_params", "REFERENCE_IMAGES"]

#: The dataset name of ``reference.images`` (generic images that are every model's PED reference).
REFERENCE_IMAGES = "reference_images"

log = logging.getLogger(__name__)

_WORKER: "StudyContext | None" = None  # the context of a worker process (see StudyContext.workers)


def _init_worker(params: StudyParams, mirror, params_path, specs):
    global _WORKER
    # a worker runs jobs for a process that holds the study's lock: it takes none itself
    _WORKER = StudyContext(params, mirror=mirror, progress=False, params_path=params_path, exclusive=False,
                           specs=specs)


def _call_worker(function: Callable, *args):
    return function(_WORKER, *args)


def _waiting(message: str) -> None:
    """One line in the terminal of ``make reproduce`` and in the log (a notebook, pedlib rank)."""
    notice(message)
    log.warning(message)


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


class StudyContext:
    """One study's params, data sources and splits, models and worker processes.

    Parameters
    ----------
    params : StudyParams
    mirror : path, optional
        Asset mirror (default: :func:`pedlib.assets.default_mirror`).
    progress : bool, default True
        Report progress (:mod:`pedlib.progress`).
    params_path : path, optional
        The params file (set by :meth:`load`; fine-tuning jobs run from it).
    exclusive : bool, default True
        Each stage holds the study's lock (``results/<study>/.lock``) while it runs, so that two
        runs of one study at once (two terminals, a notebook beside ``make reproduce``) take
        turns: the second waits, then finds the first one's results cached.
    specs : dict, optional
        Specs of models beyond the registry (``pedlib rank``'s torchvision, timm and checkpoint
        models, :func:`pedlib.models.hub.resolve`), by name.
    backbones : dict, optional
        Models already loaded, by name (used instead of loading them again here).
    """

    def __init__(self, params: StudyParams, *, mirror=None, progress: bool = True,
                 params_path: str | os.PathLike | None = None, exclusive: bool = True,
                 specs: dict[str, models.ModelSpec] | None = None,
                 backbones: dict[str, models.Backbone] | None = None):
        self.params = params
        self.exclusive = exclusive
        self._lock = None
        self.mirror = mirror
        self.progress = progress
        self.params_path = params_path
        self._specs = {**(specs or {}), **{name: b.spec for name, b in (backbones or {}).items()}}
        self._backbones: dict[str, models.Backbone] = dict(backbones or {})
        self._sources: dict[str, data.ImageSource] = {}
        self._splits: dict[str, data.Split] = {}
        self._unavailable: set[str] = set()
        self._pool: WorkerPool | None = None
        self._shared: dict[str, object] = {}

    @classmethod
    def load(cls, study: str | os.PathLike, **options):
        """Open a study by name (``"pocket"``: ``params/pocket.yaml`` found from the current
        folder or a parent, as from ``notebooks/``) or by the path of its params file."""
        path = find_params(study)
        return cls(load_params(path), params_path=path, **options)

    def shared(self, name: str, make: Callable[[], object]):
        """The object ``make()`` gave the first time ``name`` was asked for on this context (a
        stage's helpers that keep keys between calls: the paper sweep has 2,772 jobs)."""
        if name not in self._shared:
            self._shared[name] = make()
        return self._shared[name]

    @contextlib.contextmanager
    def locked(self):
        """Hold the study's lock (``results/<study>/.lock``, reentrant) for the duration; when
        another process holds it, say so once and wait for it."""
        if not self.exclusive:
            yield
            return
        if self._lock is None:
            from filelock import FileLock

            self.output.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(self.output / ".lock")
        with records.exclusive(self._lock, f"another run of the {self.params.study} study holds "
                               f"{self.output / '.lock'}; waiting for it to finish (its results are then reused)",
                               say=_waiting):
            yield

    # ------------------------------------------------------------------ layout
    @property
    def output(self) -> Path:
        return self.params.output_dir

    @property
    def figures_dir(self) -> Path:
        return self.params.figures_dir

    def record_params(self) -> dict:
        """The params as every result record stores them."""
        return self.params.as_dict()

    # ------------------------------------------------------------------ models
    @cached_property
    def models(self) -> list[str]:
        chosen = self.params.models
        return models.list_models(zoo=chosen) if isinstance(chosen, str) else list(chosen)

    def pool(self, name: str) -> list[str]:
        """Models of the pool ``name`` (rules: family, source, trainable, models)."""
        rule = self.params.pools[name]
        chosen = []
        for model in self.models:
            spec = self.spec(model)
            if ("family" in rule and spec.family != rule["family"]) or \
               ("source" in rule and spec.source != rule["source"]) or \
               ("trainable" in rule and spec.trainable != rule["trainable"]) or \
               ("models" in rule and model not in rule["models"]):
                continue
            chosen.append(model)
        return chosen

    def spec(self, model: str) -> models.ModelSpec:
        """The model's spec, with ``extract.image_size`` applied (tests run paper models tiny)."""
        spec = self._specs[model] if model in self._specs else models.get_spec(model)
        size = self.params.extract.image_size
        return spec if size is None else dataclasses.replace(spec, input_size=size)

    @property
    def device(self) -> torch.device:
        return torch.device(self.params.extract.device)

    def backbone(self, model: str) -> models.Backbone:
        """The loaded model, kept until :meth:`release_backbones` (a stage uses each model
        many times)."""
        if model not in self._backbones:
            spec = self.spec(model)
            backbone = spec.factory(spec, mirror=self.mirror, device=self.params.extract.device)
            backbone.spec = spec
            if hasattr(backbone, "precision"):
                backbone.precision = self.params.extract.precision
            self._backbones[model] = backbone
        return self._backbones[model]

    def release_backbones(self) -> None:
        self._backbones.clear()

    def extraction_threads(self):
        """Extraction runs on ``extract.threads`` CPU threads: a float32 convolution's last
        bits depend on how its work is split, so a fixed count keeps features the same on
        every machine."""
        return torch_threads(self.params.extract.threads)

    # ------------------------------------------------------------------ data
    @property
    def datasets(self) -> list[str]:
        return list(self.params.datasets)

    def source(self, dataset: str) -> data.ImageSource:
        if dataset not in self._sources and dataset == REFERENCE_IMAGES and self.params.reference.images:
            root = Path(self.params.root) / self.params.reference.images
            self._sources[dataset] = data.create("imagefolder" if root.is_dir() else "csv", root=str(root))
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
        size = min(self.params.reference.per_dataset or len(source), len(source))
        return np.sort(rng.choice(len(source), size=size, replace=False))

    def indices(self, dataset: str, part: str) -> np.ndarray:
        """Image indices of ``dataset``'s ``part``: train, test or reference."""
        if part == "reference":
            return self.reference_indices(dataset)
        return self.split(dataset)[part]

    def source_dataset(self, model: str) -> str | None:
        """The model's pretraining dataset when the study can read it (else None, warned once)."""
        source = self.spec(model).source
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

    # ------------------------------------------------------------------ worker processes
    def workers(self) -> WorkerPool:
        """The study's worker processes (``processes``), started on first use and kept for
        the next stages; each holds a copy of this study."""
        if self._pool is None:
            self._pool = WorkerPool(self.params.processes, _init_worker,
                                    (self.params, self.mirror, self.params_path, self._specs))
        return self._pool

    def map(self, function: Callable, jobs: Sequence[tuple], *, desc: str = "", unit: str = "jobs",
            with_study: bool = True, after: Sequence[Sequence[int]] | None = None,
            work: Sequence[float] | None = None) -> list:
        """``[function(study, *job) for job in jobs]`` in the worker processes, where
        ``study`` is the worker's copy of this context (this context itself when ``processes``
        is 1: the jobs then run here, in order; ``with_study=False``:
        ``function(*job)``); ``function`` must be a module-level function; ``after``: the
        jobs each waits for, ``work`` each one's size for the ETA (:meth:`pedlib.parallel.WorkerPool.map`)."""
        pool = self.workers()
        if with_study and pool.processes <= 1:  # here: this context, not a copy of it
            jobs = [(self, *job) for job in jobs]
        elif with_study:
            jobs = [(function, *job) for job in jobs]
            function = _call_worker
        return pool.map(function, jobs, desc=desc, unit=unit, show=self.progress, after=after, work=work)

    def close(self):
        """Stop the worker processes (also done at exit)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
