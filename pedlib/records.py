"""Provenance records, content keys and atomic writes: how results stay reproducible and whole.

Every result file ``X`` has a sidecar ``X.record.json``::

    {"key": <sha256 of inputs + params + code version>, "params": ..., "seed": ...,
     "inputs": ..., "versions": {...}, "git": {"commit": ..., "dirty": ...}, "created": ...}

A stage recomputes ``X`` unless the payload exists and its record's key equals the key of
the work it is about to do. Payload and record are written to a temporary file in the same
folder and renamed into place, payload first: a crash leaves the old state or a payload
without a matching record (recomputed next time), never half a file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["content_key", "code_version", "environment", "git_state", "atomic_write",
           "write_record", "read_record", "is_fresh", "save_npz", "load_npz", "write_csv",
           "record_path"]

_PACKAGE_ROOT = Path(__file__).resolve().parent
_VERSIONED = ("numpy", "scipy", "scikit-learn", "torch", "torchvision", "ai-edge-litert", "pandas")


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types, the same on every run: sets become sorted lists and
    dataclasses dicts, so no key depends on hash order (``PYTHONHASHSEED``) or on a repr."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                          if f.compare or not callable(getattr(value, f.name))})
    if isinstance(value, (set, frozenset)):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _refuse(value: Any):
    raise TypeError(f"content_key: {type(value).__name__} has no canonical form; pass its "
                    "identifying fields (str, numbers, lists, dicts, sets, dataclasses, arrays)")


def content_key(*parts: Any) -> str:
    """sha256 of the canonical JSON of ``parts``: dict and set order do not matter, and
    anything without a canonical form is refused rather than hashed by its ``str``."""
    text = json.dumps(_jsonable(parts), sort_keys=True, separators=(",", ":"), default=_refuse)
    return hashlib.sha256(text.encode()).hexdigest()


@lru_cache(maxsize=None)
def source_version(*objects: Any) -> str:
    """Hash of the source of particular modules, classes or functions: narrower than
    :func:`code_version` for results that are expensive to recompute (the committed
    fine-tuning table), so that edits elsewhere in the same modules leave them valid."""
    import inspect

    digest = hashlib.sha256()
    for obj in objects:
        digest.update(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj.__name__)}".encode())
        digest.update(inspect.getsource(obj).encode())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=None)
def code_version(*modules: str) -> str:
    """Hash of the source of pedlib modules or subpackages (e.g. ``"ped"``, ``"metrics"``).

    A result depends on the code that computed it; editing that code changes its keys, while
    editing unrelated modules (plots, notebooks) keeps caches valid.
    """
    digest = hashlib.sha256()
    for module in sorted(modules):
        target = _PACKAGE_ROOT / module.replace(".", "/")
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
        if not files or not files[0].exists():
            raise ValueError(f"code_version: no pedlib module {module!r}")
        for file in files:
            digest.update(str(file.relative_to(_PACKAGE_ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def git_state() -> dict:
    """The git commit of the working tree that runs pedlib and whether it has local changes."""
    def run(*args):
        return subprocess.run(["git", *args], cwd=_PACKAGE_ROOT, capture_output=True, text=True,
                              timeout=10)
    try:
        head = run("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        dirty = run("status", "--porcelain", "--untracked-files=no")
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


@lru_cache(maxsize=1)
def environment() -> dict:
    """Versions of Python, pedlib and the numerical packages, the platform and the CPU arithmetic."""
    from . import __version__

    versions = {"python": platform.python_version(), "pedlib": __version__}
    for package in _VERSIONED:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"versions": versions, "platform": platform.platform(), "machine": platform.machine(),
            "cpu": cpu_arithmetic()}


@lru_cache(maxsize=1)
def cpu_arithmetic() -> dict:
    """What decides the last bits of a float32 result on this machine: the CPU, the instruction
    set torch's kernels dispatch to (``AVX2``, ``AVX512``, ...) and the kernels of the BLAS that
    numpy and scipy load. Results are bit-identical between runs with the same ``torch`` and
    ``blas`` entries; across different ones they can differ in the last bits, which a 100-step
    fine-tuning run can turn into one image more or less correct."""
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS, so the list does not depend on imports)
    import threadpoolctl
    import torch

    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                          if line.startswith("model name")), model)
    except OSError:
        pass
    blas = sorted({f"{info['internal_api']}:{info.get('architecture')}"
                   for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"})
    return {"model": model, "torch": torch.backends.cpu.get_cpu_capability(), "blas": blas}


def record_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".record.json")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_record(path: str | os.PathLike, key: str, *, params: Any = None, seed: Any = None,
                 inputs: Any = None, extra: Mapping | None = None) -> dict:
    """Write ``path``'s provenance sidecar (call after the payload is in place)."""
    record = {"key": key, "file": Path(path).name, "params": _jsonable(params), "seed": seed,
              "inputs": _jsonable(inputs), **environment(), "git": git_state(),
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              **_jsonable(dict(extra or {}))}
    text = json.dumps(record, indent=1, sort_keys=True, default=str)
    atomic_write(record_path(path), lambda tmp: tmp.write_text(text))
    return record


def read_record(path: str | os.PathLike) -> dict | None:
    """The sidecar record of ``path``, or None if there is none or it is unreadable."""
    try:
        return json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return None


def is_fresh(path: str | os.PathLike, key: str) -> bool:
    """True when ``path`` exists and its record was written for exactly this ``key``."""
    record = read_record(path)
    return Path(path).exists() and record is not None and record.get("key") == key


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """``np.savez`` atomically."""
    def write(tmp: Path):
        with tmp.open("wb") as handle:
            np.savez(handle, **arrays)
    return atomic_write(path, write)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def write_csv(frame, path: str | os.PathLike) -> Path:
    """``DataFrame.to_csv`` atomically; floats keep full precision (they read back bit for bit)."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
