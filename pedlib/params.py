"""Study parameters: a YAML file parsed into typed dataclasses and validated before any work.

An unknown key is an error naming the key and the closest valid one; a wrong type, an unknown
model, dataset or metric name, or an out-of-range value is an error naming the field.
"""

from __future__ import annotations

from ._extras import require as _require

_require("torch", "pedlib.params", ("yaml",))

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

from .groundtruth.finetune import FinetuneConfig

__all__ = ["ParamsError", "StudyParams", "SlurmParams", "PlotParams", "DatasetParams", "GroundTruthParams",
           "LinearProbeParams", "FinetuneParams", "ReferenceParams", "SensitivityParams", "EvaluationParams",
           "ExtractParams", "PortsParams", "load_params", "parse_params"]


class ParamsError(ValueError):
    """A params file is malformed; the message names the file, the field and the problem."""



@dataclass(frozen=True)
class SlurmParams:
    """Cluster settings of the fine-tuning jobs (``groundtruth.finetune.slurm``).

    Attributes
    ----------
    partition : str, optional
        The SLURM partition (default: the cluster's).
    gpus_per_task : int
        GPUs per job (0 for CPU-only jobs).
    cpus_per_task : int
        CPUs per job: DataLoader workers need them (``groundtruth.finetune.workers``).
    time_minutes : int
        Time limit of one job; a job that reaches it is requeued and resumes from its checkpoint.
    mem_gb : float
        Memory per job.
    array_parallelism : int
        At most this many jobs of an array run at once (SLURM's ``--array=...%N``); for
        ``--executor local``, how many processes run at once.
    use_srun : bool
        Start the job with ``srun`` inside the batch script (submitit's default).
    setup : list of str
        Shell lines run before the job (``module load cuda``, ``source venv/bin/activate``).
    additional : dict
        Any other ``#SBATCH`` option, e.g. ``{account: mylab, qos: high}``.
    """

    partition: str | None = None
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    time_minutes: int = 180
    mem_gb: float = 32.0
    array_parallelism: int = 64
    use_srun: bool = True
    setup: tuple[str, ...] = ()
    additional: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.gpus_per_task < 0 or self.cpus_per_task < 1 or self.time_minutes < 1 or self.mem_gb <= 0 \
                or self.array_parallelism < 1:
            raise ValueError("slurm: gpus_per_task must be >= 0; cpus_per_task, time_minutes, mem_gb and "
                             "array_parallelism must be positive")


@dataclass(frozen=True)
class DatasetParams:
    """How a target is split. ``train_per_class``/``test_per_class`` cap each class."""

    train_per_class: int | None = None
    test_per_class: int | None = None
    test_fraction: float = 0.5  # 0: no test split, every image is scored (pedlib rank's target)
    root: str | None = None  # for imagefolder / csv datasets
    type: str | None = None  # registry name when the key is an alias (e.g. a user's folder)
    options: dict[str, Any] = field(default_factory=dict)  # more factory options (split_dir, partition)


@dataclass(frozen=True)
class ExtractParams:
    """Feature extraction: ``threads`` CPU threads (fixed, so features are the same on every
    machine), ``precision`` fp32 (default; TF32 off on CUDA) or autocast bf16 / fp16,
    ``gpu_decode``: on CUDA, JPEG files are decoded and resized on the GPU; ``parallel``: on
    the CPU, each (dataset, split) group in one of the study's worker processes (two
    one-thread processes outrun one two-thread process on small convolutions)."""

    batch_size: int = 64
    threads: int = 2
    device: str = "cpu"
    image_size: int | None = None  # override every model's input size (tests, quick looks)
    workers: int = 0  # DataLoader processes decoding images (0: decode in the main process)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gpu_decode: bool = True
    parallel: bool = False


@dataclass(frozen=True)
class PortsParams:
    """The ports' agreement check (:mod:`pedlib.models.port_check`): ``images`` drawn from the
    pocket targets; ``null`` skips it."""

    images: int = 256


@dataclass(frozen=True)
class LinearProbeParams:
    Cs: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    folds: int = 3
    max_iter: int = 500
    threads: int | None = 1  # BLAS threads per fit (small fits: 1 avoids oversubscription)


@dataclass(frozen=True)
class FinetuneParams(FinetuneConfig):
    """The fine-tuning protocol and where its table lives.

    ``protocol: cell`` (pocket study, :mod:`pedlib.groundtruth.finetune`): one job per
    (model, dataset) on images held in memory. ``protocol: sweep`` (paper studies,
    :mod:`pedlib.groundtruth.sweep`): one job per (model, dataset, grid point) plus one final
    retrain per seed, streaming images, on ``device``, checkpointed every ``checkpoint_every``
    steps; ``weight_decay_per_lr`` divides each weight decay by the learning rate. ``slurm``:
    the cluster settings of ``pedlib finetune --executor slurm`` (:class:`SlurmParams`).
    """

    enabled: bool = True
    table: str | None = None  # committed result table; None: results/<study>/groundtruth/finetune.csv
    models: tuple[str, ...] | Literal["trainable"] = "trainable"
    datasets: tuple[str, ...] | Literal["all"] = "all"
    protocol: Literal["cell", "sweep"] = "cell"
    weight_decay_per_lr: bool = False
    augment: bool = False
    device: str = "cpu"
    workers: int = 0
    checkpoint_every: int = 500
    gpu_decode: bool = True  # sweep on CUDA: JPEG files decoded on the GPU
    slurm: SlurmParams | None = field(default_factory=SlurmParams)  # `pedlib finetune --executor slurm`


@dataclass(frozen=True)
class GroundTruthParams:
    linear_probe: LinearProbeParams = field(default_factory=LinearProbeParams)
    finetune: FinetuneParams = field(default_factory=FinetuneParams)
    published: str | None = None  # a CSV of model,dataset,accuracy (paper studies)


@dataclass(frozen=True)
class ReferenceParams:
    """PED's reference sample: ``source`` (the model's pretraining data when the study has it
    and it is not the target, else ``others``), ``others`` (the other targets pooled) or
    ``none`` (standardise with the target's own statistics). ``images``: a folder (ImageFolder or
    CSV; labels unused) of generic images that is every model's reference in place of its source
    data or the other targets (``pedlib rank --reference``). ``per_dataset``: the images drawn
    from each reference dataset (null: all)."""

    mode: Literal["source", "others", "none"] = "source"
    per_dataset: int | None = 200
    ablation: tuple[Literal["source", "others", "none"], ...] = ("others", "none")
    roots: dict[str, str] = field(default_factory=dict)  # source dataset -> its folder (imagenet)
    require_source: bool = False  # warn when a model's source data is missing (paper studies)
    images: str | None = None


@dataclass(frozen=True)
class SensitivityParams:
    metrics: tuple[str, ...] = ("logme",)
    nsigma: tuple[float, ...] = (0.3, 0.6, 1.0, 2.0)
    time_step: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)


@dataclass(frozen=True)
class EvaluationParams:
    groundtruth: tuple[Literal["linear_probe", "finetune", "published"], ...] = ("linear_probe", "finetune")
    bootstrap: int = 1000
    level: float = 0.95
    min_models: int = 3
    paper_table: str | None = None  # a published weighted-tau table to compare with


@dataclass(frozen=True)
class PlotParams:
    """How ``figures/<study>/`` is written: every figure in each of ``formats`` (PDF: vector,
    fonts embedded; PNG at ``dpi``; SVG), byte-stable from run to run."""

    formats: tuple[Literal["pdf", "png", "svg"], ...] = ("pdf", "png")
    dpi: int = 300


@dataclass(frozen=True)
class StudyParams:
    """Everything a study run depends on (``params/<study>.yaml``)."""

    study: str
    datasets: dict[str, DatasetParams]
    models: tuple[str, ...] | str = "pocket"  # a list of names, or a zoo: pocket, paper-ssl, ...
    description: str = ""
    seed: int = 0
    output: str | None = None  # default results/<study>
    figures: str | None = None  # default figures/<study>
    pools: dict[str, dict] = field(default_factory=lambda: {"all": {}})
    extract: ExtractParams = field(default_factory=ExtractParams)
    groundtruth: GroundTruthParams = field(default_factory=GroundTruthParams)
    metrics: tuple[str, ...] = ("logme", "sfda", "gbc", "nleep", "parc", "hscore", "transrate")
    metric_options: dict[str, dict] = field(default_factory=dict)
    ped: dict[str, float] = field(default_factory=dict)
    reference: ReferenceParams = field(default_factory=ReferenceParams)
    sensitivity: SensitivityParams | None = field(default_factory=SensitivityParams)
    evaluation: EvaluationParams = field(default_factory=EvaluationParams)
    plots: PlotParams = field(default_factory=PlotParams)
    score_threads: int | None = 1  # BLAS threads while scoring (None: the library default)
    processes: int | None = None  # worker processes for independent cells (None: one per core)
    ports: PortsParams | None = field(default_factory=PortsParams)
    score_split: Literal["train", "all"] = "train"  # "all": train + test, as the reference code
    root: str = "."  # folder that relative paths are resolved against (set by load_params)

    @property
    def output_dir(self) -> Path:
        return Path(self.root) / (self.output or f"results/{self.study}")

    @property
    def figures_dir(self) -> Path:
        return Path(self.root) / (self.figures or f"figures/{self.study}")

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("root")
        return data


def _fail(where: str, message: str):
    raise ParamsError(f"{where}: {message}")


def _child(where: str, key: Any) -> str:
    """``file: key.path``: the file once, then the keys joined by dots."""
    return f"{where}.{key}" if ": " in where else f"{where}: {key}"


def _accepts(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the shape ``hint`` takes (a mapping for a section, a list for a
    tuple, ...), so that a union reports the error of the one form the value was meant as."""
    origin = typing.get_origin(hint)
    if hint is type(None):
        return value is None
    if dataclasses.is_dataclass(hint) or origin is dict or hint is dict:
        return isinstance(value, dict)
    if origin is tuple:
        return isinstance(value, (list, tuple))
    if origin is Literal or hint is str:
        return isinstance(value, str)
    if hint in (int, float, bool):
        return isinstance(value, (int, float, bool))
    return True


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` and convert lists to tuples, dicts to dataclasses."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:  # null means None, not a default-built section
            return None
        meant = [option for option in args if _accepts(value, option)]
        if len(meant) == 1:  # one form takes this kind of value: its error is the one to show
            return _convert(value, meant[0], where)
        errors = []
        for option in meant or args:
            try:
                return _convert(value, option, where)
            except ParamsError as error:
                errors.append(str(error).rsplit(": ", 1)[-1])
        _fail(where, f"{value!r} is none of the accepted forms ({'; '.join(errors)})")
    if hint is type(None):
        if value is not None:
            _fail(where, f"expected null, got {value!r}")
        return None
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            _fail(where, f"{value!r} is not one of {list(args)}"
                  + (f"; did you mean {close[0]!r}?" if close else ""))
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            _fail(where, f"expected a list, got {value!r}")
        item = args[0]
        return tuple(_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            _fail(where, f"expected a mapping, got {value!r}")
        key_type, value_type = args
        return {str(k): _convert(v, value_type, _child(where, k)) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            _fail(where, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(where, f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(where, f"expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            _fail(where, f"expected a string, got {value!r}")
        return value
    if hint is dict:
        if not isinstance(value, dict):
            _fail(where, f"expected a mapping, got {value!r}")
        return dict(value)
    raise TypeError(f"unsupported params type {hint!r}")  # a bug in this module, not in the file


def _closest(name: str, options) -> str | None:
    """The option closest to ``name``: difflib's match, else one that differs by a letter or
    two in a short name (``Cz`` for ``Cs``), ignoring case."""
    options = list(options)
    close = difflib.get_close_matches(name, options, n=1)
    if close:
        return close[0]
    lowered = {o.lower(): o for o in options}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[close[0]] if close else None


def _build(cls, value: Any, where: str):
    if value is None:
        value = {}
    if not isinstance(value, dict):
        _fail(where, f"expected a mapping, got {value!r}")
    hints = typing.get_type_hints(cls)
    # StudyParams.root is where the file was found, set by load_params, never written in it
    fields = {f.name: f for f in dataclasses.fields(cls) if not (cls is StudyParams and f.name == "root")}
    unknown = [k for k in value if k not in fields]
    if unknown:
        key = unknown[0]
        close = _closest(str(key), fields)
        _fail(where, f"unknown key {key!r}" + (f"; did you mean {close!r}?" if close else "")
              + f" (valid keys: {', '.join(fields)})")
    missing = [name for name, f in fields.items() if name not in value
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        _fail(where, f"missing required key {missing[0]!r}")
    converted = {k: _convert(v, hints[k], _child(where, k) if where else k) for k, v in value.items()}
    try:
        return cls(**converted)
    except (TypeError, ValueError) as error:
        _fail(where, str(error))


def _check_names(kind: str, names, known, where: str):
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
            _fail(where, f"unknown {kind} {name!r}"
                  + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")
                  + f" Available: {', '.join(sorted(known))}")


def _validate(params: StudyParams, where: str, known_models=()) -> StudyParams:
    from . import data, metrics, models, ped

    if not params.datasets:
        _fail(where, "datasets: at least one target dataset is needed")
    for name, options in params.datasets.items():
        _check_names("dataset", [options.type or name], data.available(), f"{where}: datasets")
        for key in ("train_per_class", "test_per_class"):
            cap = getattr(options, key)
            if cap is not None and cap < 2:
                _fail(where, f"datasets.{name}.{key} must be at least 2, got {cap}")
        if not 0 <= options.test_fraction < 1:
            _fail(where, f"datasets.{name}.test_fraction must be in [0, 1)")
        if options.test_fraction == 0 and params.evaluation.groundtruth:
            _fail(where, f"datasets.{name}.test_fraction 0 leaves no test images for a ground truth; "
                  "use evaluation.groundtruth: [] (a study that only scores) or a test_fraction in (0, 1)")
    if isinstance(params.models, str):
        _check_names("model zoo", [params.models], models.zoos(), f"{where}: models")
    else:
        _check_names("model", params.models, [*models.list_models(), *known_models], f"{where}: models")
        if len(set(params.models)) != len(params.models):
            _fail(where, "models: a model is listed twice")
    feature_metrics = metrics.available(input="features")
    _check_names("metric", params.metrics, feature_metrics, f"{where}: metrics")
    _check_names("metric", params.metric_options, params.metrics, f"{where}: metric_options")
    _check_names("PED option", params.ped, ped.DEFAULTS, f"{where}: ped")
    if not params.plots.formats or len(set(params.plots.formats)) < len(params.plots.formats):
        _fail(where, f"plots.formats must name each of pdf, png, svg at most once, got {list(params.plots.formats)}")
    if params.plots.dpi < 50:
        _fail(where, f"plots.dpi must be at least 50, got {params.plots.dpi}")
    if params.sensitivity is not None:
        _check_names("metric", params.sensitivity.metrics, params.metrics, f"{where}: sensitivity.metrics")
        if not params.sensitivity.nsigma or not params.sensitivity.time_step:
            _fail(where, "sensitivity.nsigma and sensitivity.time_step must be non-empty")
    fine = params.groundtruth.finetune
    if fine.models != "trainable":
        _check_names("model", fine.models, models.list_models(trainable=True),
                     f"{where}: groundtruth.finetune.models (trainable models)")
    if fine.datasets != "all":
        _check_names("dataset", fine.datasets, params.datasets, f"{where}: groundtruth.finetune.datasets")
    if fine.workers < 0 or fine.checkpoint_every < 1 or params.extract.workers < 0:
        _fail(where, "workers must be >= 0 and groundtruth.finetune.checkpoint_every >= 1")
    for pool, rule in params.pools.items():
        _check_names("pool rule", rule, ("family", "source", "trainable", "models"),
                     f"{where}: pools.{pool}")
    if params.reference.per_dataset is not None and params.reference.per_dataset < 2:
        _fail(where, "reference.per_dataset must be at least 2")
    if params.evaluation.bootstrap < 0 or not 0 < params.evaluation.level < 1:
        _fail(where, "evaluation.bootstrap must be >= 0 and evaluation.level in (0, 1)")
    if params.extract.batch_size < 1 or params.extract.threads < 1:
        _fail(where, "extract.batch_size and extract.threads must be positive")
    if params.processes is not None and params.processes < 1:
        _fail(where, f"processes must be at least 1 (or null: one per core), got {params.processes}")
    if params.ports is not None and params.ports.images < 1:
        _fail(where, f"ports.images must be at least 1, got {params.ports.images}")
    return params


def parse_params(raw: Any, *, where: str = "params", root: str | os.PathLike = ".",
                 known_models: Sequence[str] = ()) -> StudyParams:
    """Validate a params mapping (as loaded from YAML) into :class:`StudyParams`;
    ``known_models``: model names beyond the registry's (``pedlib rank``'s hub models)."""
    params = _build(StudyParams, raw, where)
    return _validate(dataclasses.replace(params, root=str(root)), where, known_models)


def load_params(path: str | os.PathLike, *, root: str | os.PathLike | None = None) -> StudyParams:
    """Read and validate ``params/<study>.yaml``.

    Relative paths in the file (output, figures, tables) are relative to ``root``, by default
    the folder above ``params/`` (the project root).
    """
    path = Path(path)
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        raise ParamsError(f"params file {path} does not exist"
                          + (f"; studies in {path.parent}: {', '.join(available)}" if available else ""))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if root is None:
        root = path.resolve().parent.parent if path.resolve().parent.name == "params" else Path.cwd()
    return parse_params(raw, where=str(path), root=root)
