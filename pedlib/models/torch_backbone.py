"""PyTorch backbones: a module with ``features`` and ``head``, and its input normalisation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.images import to_model_input
from ._spec import Backbone, ModelSpec

__all__ = ["TorchBackbone"]

_IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class TorchBackbone(Backbone):
    """Wraps an ``nn.Module`` exposing ``features(x)`` (pooled penultimate) and ``head``."""

    def __init__(self, spec: ModelSpec, module: nn.Module, device: str | torch.device = "cpu"):
        self.spec = spec
        self.module = module.eval()
        self.device = torch.device(device)
        self.module.to(self.device)

    def preprocess(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, H, W, C) -> the network's normalised float input (N, C', S, S)."""
        x = to_model_input(images, self.spec.input_size, self.spec.channels) / 255.0
        if self.spec.normalisation == "imagenet mean/std":
            x = (x - _IMAGENET_MEAN) / _IMAGENET_STD
        return x

    @torch.no_grad()
    def _features(self, images: np.ndarray) -> np.ndarray:
        x = self.preprocess(images).to(self.device)
        return self.module.features(x).float().cpu().numpy()
