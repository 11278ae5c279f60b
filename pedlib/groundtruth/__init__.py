"""Ground truth for judging rankings: linear probe, fine-tuning, published accuracies."""

from .finetune import FinetuneConfig, finetune_cell, finetune_run
from .linear_probe import linear_probe

__all__ = ["linear_probe", "FinetuneConfig", "finetune_cell", "finetune_run"]
