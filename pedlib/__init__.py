"""pedlib: choose a pretrained model for a target task without fine-tuning every candidate.

>>> import pedlib
>>> pedlib.metrics.available()                       # doctest: +SKIP
>>> pedlib.score(features, labels, metric="logme", ped=True, reference=generic)  # doctest: +SKIP
"""

from __future__ import annotations

import warnings

from . import metrics, ped, statistics, validation

__version__ = "0.1.0"
__all__ = ["metrics", "ped", "correlations", "validation", "statistics", "score", "__version__"]

# Submodules with heavy dependencies (torch, pooch, matplotlib, scipy.stats) load on first use:
# ``pedlib.assets.resolve(...)`` works after a plain ``import pedlib``.
_LAZY = ("correlations", "assets", "data", "models", "features", "groundtruth", "study", "rank", "plots", "records",
         "scoring", "summary", "params", "cluster")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'pedlib' has no attribute {name!r}")


def score(features, labels, metric: str = "logme", ped: None | bool | dict = None,
          reference=None, *, metric_options: dict | None = None) -> float:
    """Score how well ``features`` should transfer to ``labels``, optionally after PED.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Or source-class probabilities for ``metric="leep"`` / ``"nce"``.
    labels : array-like of shape (n_samples,)
    metric : str, default "logme"
        Any name in ``pedlib.metrics.available()``.
    ped : None, bool or dict
        ``None``/``False``: score the features as they are; ``True``: apply Potential Energy
        Decline with its defaults first; a dict: PED with these options (see
        ``pedlib.ped.decline``).
    reference : array-like of shape (n_reference, n_features), optional
        PED's reference sample (the model's features on generic data). Only used with PED.
    metric_options : dict, optional
        Keyword options for the metric.

    Returns
    -------
    score : float
    """
    if ped is None or ped is False:
        if reference is not None:
            warnings.warn("reference is only used with PED (ped=True or a dict); ignoring it",
                          UserWarning, stacklevel=2)
        return metrics.get(metric)(features, labels, **(metric_options or {}))
    if ped is True:
        options: dict = {}
    elif isinstance(ped, dict):
        options = dict(ped)
    else:
        raise ValueError(f"ped must be None, True, False or a dict of PED options, got {ped!r}")
    from . import ped as ped_module  # the parameter shadows the module name here

    return ped_module.score(features, labels, metric, reference, metric_options=metric_options,
                            **options)
