"""Metric registry: ``register`` adds a metric, ``get`` finds one, ``available`` lists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from .._registry import Registry

__all__ = ["MetricInfo", "register", "get", "info", "available", "SATURATION_RTOL", "two_per_class"]

InputKind = Literal["features", "probabilities"]


@dataclass(frozen=True)
class MetricInfo:
    """What the rest of pedlib needs to know about a registered metric.

    Attributes
    ----------
    name : str
    function : callable ``(features, labels, **options) -> float``
    input : "features" or "probabilities"
        PED moves features, so it wraps every metric whose input is ``"features"``.
    kind : "metric" or "baseline"
        Baselines are simple heuristics (k-NN accuracy, feature dimension) that every
        transferability metric should beat; they are scored and evaluated like metrics.
    from_statistics : callable ``(statistics, **options) -> float``, optional
        The same score from a :class:`pedlib.statistics.FeatureStatistics` or one of its
        translations, for metrics that see the features only through class statistics
        (LogME: Gram matrix, class sums, counts; GBC: class means and variances). PED then
        scores each of its settings without materialising the moved features.
    requires : callable ``(n_samples, class_counts, n_features, **options) -> str | None``, optional
        What the metric needs of a feature set beyond 2 classes: returns the problem (e.g.
        "N-LEEP needs 60 samples for its 60 mixture components, got 40") or None. The score
        stage checks it for every cell before any work (:func:`problem`).
    maximum : callable ``(n_classes, n_samples, n_features) -> float``, optional
        The metric's largest possible value. A score within ``SATURATION_RTOL`` of it is
        *saturated*: it no longer tells models apart (H-score reaches C - 1 whenever the
        features' rank reaches the number of samples).
    """

    name: str
    function: Callable[..., float]
    input: InputKind = "features"
    kind: Literal["metric", "baseline"] = "metric"
    maximum: Callable[[int, int, int], float] | None = None
    requires: Callable[..., str | None] | None = None
    from_statistics: Callable[..., float] | None = None

    def problem(self, n_samples: int, class_counts, n_features: int, **options) -> str | None:
        """Why the metric cannot score a feature set of this size, or None if it can."""
        if len(class_counts) < 2:
            return f"{self.name} needs at least 2 classes, got {len(class_counts)}"
        return None if self.requires is None else self.requires(n_samples, class_counts, n_features, **options)

    def saturated(self, score: float, n_classes: int, n_samples: int, n_features: int) -> bool:
        """Whether ``score`` is within ``SATURATION_RTOL`` of the metric's maximum."""
        if self.maximum is None:
            return False
        top = self.maximum(n_classes, n_samples, n_features)
        return bool(abs(score - top) <= SATURATION_RTOL * max(abs(top), 1.0))


_REGISTRY: Registry[MetricInfo] = Registry("metric", fold_case=True)

def two_per_class(n_samples: int, class_counts, n_features: int, **options) -> str | None:
    """``requires`` of metrics that estimate a spread per class (GBC; PED itself)."""
    smallest = min(class_counts)
    return None if smallest >= 2 else f"needs at least 2 samples per class, the smallest class has {smallest}"


#: Relative distance to a metric's maximum under which a score counts as saturated.
SATURATION_RTOL = 1e-6


def register(name: str | None = None, *, input: InputKind = "features",
             kind: Literal["metric", "baseline"] = "metric",
             maximum: Callable[[int, int, int], float] | None = None,
             requires: Callable[..., str | None] | None = None,
             from_statistics: Callable[..., float] | None = None):
    """Decorator that registers a transferability metric under ``name``.

    The function takes ``(features, labels, **options)`` and returns a float where higher
    means better expected transfer. Registering makes it available to :func:`get`, to
    ``pedlib.score`` and to ``pedlib.ped.score`` (for ``input="features"``).

    Examples
    --------
    >>> import numpy as np
    >>> from pedlib.metrics import register
    >>> @register("centroid_spread")
    ... def centroid_spread(features, labels):
    ...     return float(np.std(features))
    """
    if input not in ("features", "probabilities"):
        raise ValueError(f"input must be 'features' or 'probabilities', got {input!r}")
    if kind not in ("metric", "baseline"):
        raise ValueError(f"kind must be 'metric' or 'baseline', got {kind!r}")

    def decorator(function: Callable[..., float]) -> Callable[..., float]:
        key = _REGISTRY.key(name or function.__name__)
        if key in _REGISTRY and _REGISTRY.get(key).function is function:
            return function  # the same function again (a module reloaded)
        _REGISTRY.add(key, MetricInfo(key, function, input, kind, maximum, requires, from_statistics))
        return function

    return decorator


def info(name: str) -> MetricInfo:
    """Return the :class:`MetricInfo` of a registered metric; an unknown name raises
    :class:`~pedlib._registry.UnknownName` (a KeyError and a ValueError) listing close matches."""
    return _REGISTRY.get(name)


def get(name: str) -> Callable[..., float]:
    """Return the callable of a registered metric: ``callable(features, labels, **options) -> float``."""
    return info(name).function


def available(input: InputKind | None = None, kind: str | None = None) -> list[str]:
    """Sorted names of registered metrics, optionally only those taking ``input`` or of ``kind``."""
    return sorted(k for k, v in _REGISTRY.items()
                  if (input is None or v.input == input) and (kind is None or v.kind == kind))

