"""Transferability metrics and their registry.

Every metric is a pure function ``(features, labels, **options) -> float`` where higher means
better expected transfer. ``register`` adds one; ``get`` and ``available`` find them.
"""

from ._registry import MetricInfo, available, get, info, register
from .gbc import gbc
from .hscore import hscore
from .leep import leep, nce
from .logme import logme
from .nleep import nleep
from .parc import parc
from .sfda import sfda
from .transrate import transrate

__all__ = ["MetricInfo", "available", "get", "info", "register", "gbc", "hscore", "leep", "nce",
           "logme", "nleep", "parc", "sfda", "transrate"]
