"""The one input gate every public scoring function passes through.

Modelled on scikit-learn's ``check_array`` / ``check_X_y``: convert, check, and raise a
``ValueError`` that names the argument and the problem. Inner functions trust what comes
out of here: float64 C-contiguous features, labels recoded to ``0 .. n_classes - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LabelledFeatures", "check_features", "check_labels", "check_features_labels",
           "check_probabilities_labels", "check_reference", "to_numpy", "readable"]


def readable(value: Any) -> str:
    """``repr`` for messages, with numpy scalars (in lists too) shown as plain Python values:
    ``0.5`` and ``[99]``, not ``np.float64(0.5)`` and ``[np.int64(99)]``."""
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, np.ndarray):
        return repr(value.tolist())
    if isinstance(value, (list, tuple)):
        inner = ", ".join(readable(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    return repr(value)


@dataclass(frozen=True)
class LabelledFeatures:
    """Validated features with labels recoded to contiguous integers.

    Attributes
    ----------
    features : ndarray of shape (n_samples, n_features), float64
        A new array when the input needed converting; never the caller's array modified.
    codes : ndarray of shape (n_samples,), int64
        Labels recoded to ``0 .. n_classes - 1`` in the sorted order of ``classes``.
    classes : ndarray of shape (n_classes,)
        The original label values.
    counts : ndarray of shape (n_classes,), int64
        Number of samples per class.
    """

    features: np.ndarray
    codes: np.ndarray
    classes: np.ndarray
    counts: np.ndarray

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def to_numpy(array: Any) -> np.ndarray:
    """Return ``array`` as a numpy array; torch tensors (any device) are copied to host."""
    if hasattr(array, "detach") and hasattr(array, "cpu"):  # torch.Tensor without importing torch
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def check_features(features: Any, name: str = "features") -> np.ndarray:
    """Validate a 2-D, finite, real feature matrix and return it as float64.

    Parameters
    ----------
    features : array-like of shape (n_samples, n_features)
        Integer, boolean or floating values (any precision); computed on in float64.
    name : str
        Argument name used in error messages.

    Returns
    -------
    features : ndarray of shape (n_samples, n_features), float64, C-contiguous
    """
    array = to_numpy(features)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{name} must hold real numbers; got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers; got complex dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features); got {array.ndim}-D array of shape {array.shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float64)
    # A sum is finite exactly when every term is, barring overflow: a cheap first test.
    if not np.isfinite(array.sum()) and not (finite := np.isfinite(array)).all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(
            f"{name} contains {int((~finite).sum())} NaN or infinite values in {len(bad_rows)} rows "
            f"(first rows: {bad_rows[:5].tolist()}); remove or impute them first"
        )
    return array


def check_labels(labels: Any, n_samples: int, *, min_classes: int = 2,
                 min_per_class: int = 1, name: str = "labels", requirement: str = "this score"):
    """Validate class labels and recode them to ``0 .. n_classes - 1``.

    Labels may be strings, integers (any values, not necessarily contiguous) or floats
    with integral values. They are never used as indices directly.

    Returns
    -------
    codes : ndarray of shape (n_samples,), int64
    classes : ndarray of shape (n_classes,)
    counts : ndarray of shape (n_classes,), int64
    """
    array = to_numpy(labels)
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,); got shape {array.shape}")
    if len(array) != n_samples:
        raise ValueError(f"{name} has {len(array)} entries but features has {n_samples} rows")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if not np.array_equal(array, np.round(array)):
            raise ValueError(
                f"{name} are floats with non-integral values (e.g. {readable(array[array != np.round(array)][0])}); "
                "class labels must be integers or strings"
            )
        array = array.astype(np.int64)
    elif np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"{name} must be integers or strings; got complex dtype {array.dtype}")
    elif array.dtype == object:
        if any(value is None for value in array):
            raise ValueError(f"{name} contains None")
        array = array.astype(str)
    classes, codes, counts = np.unique(array, return_inverse=True, return_counts=True)
    if len(classes) < min_classes:
        raise ValueError(
            f"{name} has {len(classes)} distinct value{'s' if len(classes) != 1 else ''}; "
            f"a transferability score needs at least {min_classes} classes"
        )
    small = counts < min_per_class
    if small.any():
        shown = ", ".join(f"{readable(classes[i])} ({counts[i]})" for i in np.flatnonzero(small)[:5])
        raise ValueError(
            f"{int(small.sum())} class(es) of {name} have fewer than {min_per_class} samples: {shown}; "
            f"{requirement} needs at least {min_per_class} samples per class to estimate its spread"
        )
    return codes.astype(np.int64).reshape(-1), classes, counts.astype(np.int64)


def check_features_labels(features: Any, labels: Any, *, min_classes: int = 2,
                          min_per_class: int = 1, requirement: str = "this score") -> LabelledFeatures:
    """Validate features and labels together (see :func:`check_features`, :func:`check_labels`);
    ``requirement`` names who needs ``min_per_class`` in the error (e.g. ``"PED"``)."""
    array = check_features(features)
    codes, classes, counts = check_labels(labels, array.shape[0], min_classes=min_classes,
                                          min_per_class=min_per_class, requirement=requirement)
    return LabelledFeatures(array, codes, classes, counts)


def check_probabilities_labels(probabilities: Any, labels: Any, *, atol: float = 1e-3,
                               name: str = "source_probs") -> LabelledFeatures:
    """Validate source-model class probabilities: non-negative rows that sum to 1 within ``atol``."""
    array = check_features(probabilities, name=name)
    if (array < 0).any():
        raise ValueError(f"{name} has negative entries; pass probabilities (softmax outputs), not logits")
    sums = array.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if abs(sums[worst] - 1) > atol:
        raise ValueError(
            f"{name} rows must sum to 1 (within {atol}); row {worst} sums to {sums[worst]:.6g}. "
            "Pass probabilities over the source classes (softmax outputs), not logits"
        )
    codes, classes, counts = check_labels(labels, array.shape[0])
    return LabelledFeatures(array, codes, classes, counts)


def check_reference(reference: Any, n_features: int) -> np.ndarray:
    """Validate PED's reference sample: finite, 2-D, same number of features as the target."""
    array = check_features(reference, name="reference")
    if array.shape[1] != n_features:
        raise ValueError(
            f"reference has {array.shape[1]} features but features has {n_features}; "
            "the reference must be the same model's features on generic data"
        )
    if array.shape[0] < 2:
        raise ValueError("reference needs at least 2 samples to estimate a standard deviation")
    return array
