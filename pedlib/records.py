"""Provenance records, content keys and atomic writes: how results stay reproducible and whole.

Every result file ``X`` has a sidecar ``X.record.json``::

    {"key": <sha256 of inputs + params + code version>, "payload": {"bytes": ..., "sha256": ...},
     "params": ..., "seed": ..., "inputs": ..., "versions": {...}, "environment": {"lock": ...,
     "differs_from_lock": {...}}, "cpu": ..., "git": {"commit": ..., "dirty": ...}, "created": ...}

A stage recomputes ``X`` unless the payload exists, its record's key equals the key of the
work it is about to do, and the payload's size and sha256 are those its record names (a
truncated, edited or half-copied file is recomputed, with one warning naming it). Payload and
record are written to a temporary file in the same folder and renamed into place, payload
first: a crash leaves the old state or a payload without a matching record (recomputed next
time), never half a file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from . import lockfile

__all__ = ["content_key", "environment", "git_state", "atomic_write",
           "write_record", "read_record", "is_fresh", "save_npz", "load_npz", "write_csv",
           "record_path", "read_csv", "payload_digest", "environment_key", "CacheError", "exclusive"]

log = logging.getLogger(__name__)

_PACKAGE_ROOT = Path(__file__).resolve().parent
#: Named in every record for a reader; the lock's sha256 and the differences from it (in
#: ``environment``) identify the whole environment.
_VERSIONED = ("numpy", "scipy", "scikit-learn", "torch", "torchvision", "timm", "pillow", "ai-edge-litert",
              "pandas", "matplotlib", "fonttools")


class CacheError(OSError):
    """A cached result file that cannot be read; the message names the file."""


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


@lru_cache(maxsize=1)
def git_state() -> dict:
    """The git commit of the working tree that runs pedlib and whether it has local changes
    (outside ``figures/``, which a run itself rewrites)."""
    def run(*args):
        return subprocess.run(["git", *args], cwd=_PACKAGE_ROOT, capture_output=True, text=True,
                              timeout=10)
    try:
        head = run("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"commit": None, "dirty": None}
        # the study's own outputs (figures/) are what a run rewrites, not a change to what made them
        dirty = run("status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)figures")
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


@lru_cache(maxsize=1)
def environment() -> dict:
    """Versions of Python, pedlib and the main packages, the lock and what differs from it
    (:func:`pedlib.lockfile.describe`), the platform and the CPU arithmetic."""
    from . import __version__

    versions = {"python": platform.python_version(), "pedlib": __version__}
    for package in _VERSIONED:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"versions": versions, "environment": lockfile.describe(), "platform": platform.platform(),
            "machine": platform.machine(), "cpu": cpu_arithmetic()}


def environment_key() -> str:
    """What identifies the installed environment: the lock's sha256 and every distribution that
    differs from it (or, without a lock, every installed version). Part of the keys of results
    whose bytes depend on the libraries rather than on pedlib's numbers (the figures)."""
    return content_key(lockfile.describe())


@lru_cache(maxsize=1)
def cpu_arithmetic() -> dict:
    """What decides the last bits of a float32 result on this machine: the CPU, the instruction
    set torch's kernels dispatch to (``AVX2``, ``AVX512``, ...) and the kernels of the BLAS that
    numpy and scipy load. Results are bit-identical between runs with the same ``torch`` and
    ``blas`` entries; across different ones they can differ in the last bits, which a 100-step
    fine-tuning run can turn into one image more or less correct."""
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS, so the list does not depend on imports)
    import threadpoolctl

    try:
        import torch
        capability = torch.backends.cpu.get_cpu_capability()
    except ImportError:  # the core install: no torch kernels to name
        capability = None

    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo
                          if line.startswith("model name")), model)
    except OSError:
        pass
    blas = sorted({f"{info['internal_api']}:{info.get('architecture')}"
                   for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"})
    return {"model": model, "torch": capability, "blas": blas}


@contextlib.contextmanager
def exclusive(lock, waiting: str, say: Callable[[str], None] = log.warning):
    """Hold ``lock`` (a ``filelock.FileLock``; reentrant, so nested stages share one) for the
    duration; when another process holds it, ``say(waiting)`` once and wait for it, so that
    two runs over one set of results take turns instead of computing the same files at once."""
    from filelock import Timeout

    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(waiting)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


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
    """Write ``path``'s provenance sidecar (call after the payload is in place): the payload's
    size and sha256 go in it, so that :func:`is_fresh` notices a payload changed since."""
    record = {"key": key, "file": Path(path).name,
              "payload": payload_digest(path) if Path(path).is_file() else None,
              "params": _jsonable(params), "seed": seed,
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


def payload_digest(path: str | os.PathLike) -> dict:
    """``{"bytes": size, "sha256": hex}`` of a file (memoised per size and modification time,
    so that checking a cache again in the same process reads nothing)."""
    stat = os.stat(path)
    return _digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": size, "sha256": digest.hexdigest()}


def is_fresh(path: str | os.PathLike, key: str) -> bool:
    """True when ``path`` exists, its record was written for exactly this ``key``, and the
    payload is the one the record describes (size and sha256). A payload that is not (cut
    short, edited, half-copied) is stale: one warning names it, and the caller recomputes it.
    Records from before payload hashes were kept are trusted on their key alone."""
    record = read_record(path)
    if record is None or record.get("key") != key or not Path(path).exists():
        return False
    expected = record.get("payload")
    if expected is None:
        return True
    found = payload_digest(path)
    if found != expected:
        log.warning("%s does not match its record (%d bytes, sha256 %s..., expected %d bytes, %s...): "
                    "recomputing it", path, found["bytes"], found["sha256"][:12], expected.get("bytes", -1),
                    str(expected.get("sha256"))[:12])
        return False
    return True


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """``np.savez`` atomically."""
    def write(tmp: Path):
        with tmp.open("wb") as handle:
            np.savez(handle, **arrays)
    return atomic_write(path, write)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file; a file that cannot be read raises :class:`CacheError`
    naming it."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise
    except Exception as error:  # zipfile.BadZipFile, EOFError, ValueError, zlib.error: all "unreadable"
        raise CacheError(f"{path}: cannot read this feature file ({type(error).__name__}: {error}); "
                         "delete it to recompute it") from error


def read_csv(path: str | os.PathLike):
    """A CSV that :func:`write_csv` wrote, read back as it was written (empty cells are NaN,
    strings such as "NA" stay strings); an unreadable file raises :class:`CacheError` naming it."""
    import pandas as pd

    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except FileNotFoundError:
        raise
    except Exception as error:  # pandas' ParserError, EmptyDataError, UnicodeDecodeError
        raise CacheError(f"{path}: cannot read this table ({type(error).__name__}: {error}); "
                         "delete it to recompute it") from error


def write_csv(frame, path: str | os.PathLike) -> Path:
    """``DataFrame.to_csv`` atomically; floats keep full precision (they read back bit for bit)."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
