"""Ground truth for judging rankings: linear probe, fine-tuning, published accuracies."""

from .._extras import require as _require

_require("torch", "pedlib.groundtruth")

from .finetune import FinetuneConfig, finetune_cell, finetune_run
from .linear_probe import linear_probe

__all__ = ["linear_probe", "FinetuneConfig", "finetune_cell", "finetune_run", "label"]

_LABELS = {"finetune": "fine-tuning", "linear_probe": "linear probe", "published": "published accuracy"}


def label(name: str) -> str:
    """How a ground truth is named in words: ``"finetune"`` -> ``"fine-tuning"``."""
    return _LABELS.get(name, name.replace("_", " "))
