"""How a fine-tuned classifier is scored on a target's test set, as the papers report it.

* ``accuracy``: share of correct top-1 predictions (cars, cifar10/100, dtd, food, sun397);
* ``mean_per_class``: the mean over classes of each class's top-1 accuracy (aircraft,
  caltech101, flowers, pets);
* ``map11``: PASCAL VOC 2007's 11-point interpolated average precision, averaged over
  classes (voc2007, multi-label).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EVALUATION_METRICS", "top1_accuracy", "mean_per_class_accuracy", "voc11_map", "evaluate"]


def _check_single(predicted, labels) -> tuple[np.ndarray, np.ndarray]:
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != labels.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"predicted {predicted.shape} and labels {labels.shape} must be equal, "
                         "non-empty 1-D arrays")
    return predicted, labels


def top1_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``predicted == labels`` (an exact fraction k/n as a float)."""
    predicted, labels = _check_single(predicted, labels)
    return int((predicted == labels).sum()) / len(labels)


def mean_per_class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present in ``labels`` of the share of that class predicted right."""
    predicted, labels = _check_single(predicted, labels)
    classes, codes = np.unique(labels, return_inverse=True)
    correct = np.bincount(codes, weights=(predicted == labels), minlength=len(classes))
    return float(np.mean(correct / np.bincount(codes, minlength=len(classes))))


def voc11_map(scores: np.ndarray, targets: np.ndarray) -> float:
    """PASCAL VOC 2007 classification mAP with 11-point interpolation.

    Parameters
    ----------
    scores : ndarray of shape (n_images, n_classes)
        Confidence of each class (higher: more likely present).
    targets : ndarray of int, shape (n_images, n_classes)
        1 present, 0 absent, -1 present only as "difficult" objects (ignored for that class,
        as the VOC devkit does).

    Returns
    -------
    float
        Mean over classes with at least one positive of
        ``AP = mean_{t in 0, 0.1, ..., 1} max{precision(r) : recall r >= t}`` (0 if none).
    """
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if scores.shape != targets.shape or scores.ndim != 2 or len(scores) == 0:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must be equal, "
                         "non-empty (n_images, n_classes) arrays")
    if not np.isin(targets, (-1, 0, 1)).all():
        raise ValueError("targets must be 1 (present), 0 (absent) or -1 (difficult, ignored)")
    positives = (targets == 1).sum(axis=0)
    keep = positives > 0
    scores, targets, positives = scores[:, keep], targets[:, keep], positives[keep]
    if not keep.any():
        raise ValueError("no class has a positive image")
    order = np.argsort(-scores, axis=0, kind="stable")  # per class, most confident first
    ranked = np.take_along_axis(targets, order, axis=0)
    true_pos = np.cumsum(ranked == 1, axis=0)
    false_pos = np.cumsum(ranked == 0, axis=0)
    counted = np.maximum(true_pos + false_pos, 1)  # leading ignored images: precision 0
    precision = np.where(true_pos + false_pos > 0, true_pos / counted, 0.0)
    recall = true_pos / positives
    thresholds = np.linspace(0, 1, 11)
    reached = recall[:, :, None] >= thresholds  # (n, classes, 11)
    ap = np.where(reached, precision[:, :, None], 0.0).max(axis=0).mean(axis=1)
    return float(ap.mean())


EVALUATION_METRICS = {"accuracy": top1_accuracy, "mean_per_class": mean_per_class_accuracy,
                      "map11": voc11_map}


def evaluate(metric: str, outputs: np.ndarray, targets: np.ndarray) -> float:
    """Score classifier ``outputs`` (n, C) against ``targets`` with ``metric``.

    Single-label metrics take the arg-max of ``outputs`` and integer ``targets`` (n,);
    ``map11`` takes ``outputs`` as per-class confidences and ``targets`` as (n, C) in {1, 0, -1}.
    """
    if metric not in EVALUATION_METRICS:
        raise KeyError(f"unknown evaluation metric {metric!r}; known: {', '.join(EVALUATION_METRICS)}")
    if metric == "map11":
        return voc11_map(outputs, targets)
    return EVALUATION_METRICS[metric](np.asarray(outputs).argmax(axis=1), targets)
