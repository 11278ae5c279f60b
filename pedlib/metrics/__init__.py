"""Transferability metrics and their registry.

Every metric is a pure function ``(features, labels, **options) -> float`` where higher means
better expected transfer. ``register`` adds one; ``get`` and ``available`` find them.
"""

from ._registry import SATURATION_RTOL, MetricInfo, available, get, info, register, two_per_class
from .baselines import dim, knn
from .gbc import gbc
from .hscore import hscore, hscore_shrinkage
from .leep import leep, nce
from .logme import logme, logme_reference
from .nleep import nleep
from .parc import parc
from .sfda import sfda
from .transrate import transrate

__all__ = ["RECOMMENDED", "MetricInfo", "SATURATION_RTOL", "available", "get", "info", "register", "two_per_class", "dim", "gbc",
           "hscore", "hscore_shrinkage", "knn", "leep", "nce", "logme", "logme_reference", "nleep",
           "parc", "sfda", "transrate"]

#: The default (metric, PED) of ``pedlib rank``: the method with the best mean weighted tau
#: against the linear probe over all models of the pocket study (figures/pocket/; docs/study.md).
RECOMMENDED = {"metric": "logme", "ped": False}
