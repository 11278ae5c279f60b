"""Metric registry: ``register`` adds a metric, ``get`` finds one, ``available`` lists them."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Literal

__all__ = ["MetricInfo", "register", "get", "info", "available"]

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
    """

    name: str
    function: Callable[..., float]
    input: InputKind = "features"


_REGISTRY: dict[str, MetricInfo] = {}


def register(name: str | None = None, *, input: InputKind = "features"):
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

    def decorator(function: Callable[..., float]) -> Callable[..., float]:
        key = (name or function.__name__).lower()
        if key in _REGISTRY and _REGISTRY[key].function is not function:
            raise ValueError(f"a metric named {key!r} is already registered")
        _REGISTRY[key] = MetricInfo(key, function, input)
        return function

    return decorator


def info(name: str) -> MetricInfo:
    """Return the :class:`MetricInfo` of a registered metric; unknown names list close matches."""
    if not isinstance(name, str):
        raise TypeError(f"metric name must be a string, got {type(name).__name__}")
    key = name.lower()
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown metric {name!r}{hint} Available: {', '.join(available())}")
    return _REGISTRY[key]


def get(name: str) -> Callable[..., float]:
    """Return the callable of a registered metric: ``callable(features, labels, **options) -> float``."""
    return info(name).function


def available(input: InputKind | None = None) -> list[str]:
    """Sorted names of registered metrics, optionally only those taking ``input``."""
    return sorted(k for k, v in _REGISTRY.items() if input is None or v.input == input)

