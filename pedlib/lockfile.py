"""The study's locked environment: ``requirements.lock`` read, hashed and compared with what is
installed.

The lock pins every distribution of the studies' environment (``pedlib[all]``) to one version
with its hashes; ``make lock`` writes it from ``pyproject.toml``'s ranges and ``make setup``
installs exactly it. Every provenance record names the lock's sha256 and the installed
distributions that differ from it (none after ``make setup``), so a result says which
environment made it.

Standard library only: ``scripts/environment.py`` loads this file before anything is installed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
from functools import lru_cache
from pathlib import Path

__all__ = ["LOCK_NAME", "find_lock", "read_lock", "lock_sha256", "installed", "differences",
           "canonical_name", "describe"]

LOCK_NAME = "requirements.lock"
#: Distributions that are not part of the study's environment: pedlib itself, and the tools
#: that a virtual environment may or may not carry.
_IGNORED = frozenset({"pedlib"})
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def canonical_name(name: str) -> str:
    """A distribution's name as PEP 503 compares them (``Jinja2``, ``jinja2``, ``backports.strenum``
    and ``backports-strenum`` are one name each)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def find_lock() -> Path | None:
    """``PEDLIB_LOCK`` when set, else the checkout's ``requirements.lock`` beside the package
    (an editable install), else None (pedlib installed from a wheel has no lock)."""
    named = os.environ.get("PEDLIB_LOCK")
    if named:
        return Path(named)
    candidate = Path(__file__).resolve().parent.parent / LOCK_NAME
    return candidate if candidate.is_file() else None


def read_lock(path: str | os.PathLike) -> dict[str, str]:
    """Canonical name -> pinned version of every ``name==version`` line of a lock file."""
    pins: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[canonical_name(match.group(1))] = match.group(2)
    if not pins:
        raise ValueError(f"{path}: no 'name==version' line; is it a lock file?")
    return pins


def lock_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def installed() -> dict[str, str]:
    """Canonical name -> version of every distribution the running Python can import."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical_name(name), dist.version)
    return found


def differences(locked: dict[str, str], present: dict[str, str]) -> dict[str, dict]:
    """Every distribution whose installed version is not the locked one, as
    ``{name: {"locked": version or None, "installed": version or None}}`` (pedlib left out)."""
    names = sorted((set(locked) | set(present)) - _IGNORED)
    return {name: {"locked": locked.get(name), "installed": present.get(name)}
            for name in names if locked.get(name) != present.get(name)}


@lru_cache(maxsize=1)
def describe() -> dict:
    """The environment as a record states it: the lock's file and sha256 and the installed
    distributions that differ from it (``{}``: exactly the lock). Without a lock, every
    installed distribution's version is listed under ``installed``."""
    path = find_lock()
    present = installed()
    if path is None or not path.is_file():
        return {"lock": None, "installed": {k: v for k, v in sorted(present.items()) if k not in _IGNORED}}
    return {"lock": {"file": path.name, "sha256": lock_sha256(path)},
            "differs_from_lock": differences(read_lock(path), present)}
