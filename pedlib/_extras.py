"""Which extra of ``pip install pedlib[...]`` a module needs, and one line saying so when it is
missing.

The core (``pip install pedlib``: metrics, PED, evaluation) needs numpy, scipy and
scikit-learn alone. The modules that need more call :func:`require` first, so that using them
without their extra fails at once with the command that installs it, instead of a
``ModuleNotFoundError`` from deep inside an import.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "MissingExtra", "require"]

#: extra -> the top-level modules it provides (pyproject.toml's optional dependencies)
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "torchvision", "timm", "PIL", "tqdm", "yaml", "pooch", "pandas", "matplotlib",
              "filelock"),
    "study": ("tabulate", "jinja2", "papermill", "nbformat", "nbconvert", "jupyter_client", "jupytext"),
    "ports": ("ai_edge_litert", "h5py"),
    "slurm": ("submitit",),
}


class MissingExtra(ModuleNotFoundError):
    """A pedlib module was used without the extra that installs what it imports."""


def require(extra: str, user: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise :class:`MissingExtra` naming ``extra`` when one of its ``modules`` (default: all of
    them) cannot be imported; ``user`` is the pedlib module that needs it."""
    missing = [m for m in (modules or EXTRAS[extra]) if importlib.util.find_spec(m) is None]
    if missing:
        error = MissingExtra(f"{user} needs pedlib's '{extra}' extra ({', '.join(missing)} not installed): "
                             f"pip install 'pedlib[{extra}]'")
        error.name = missing[0]
        raise error
