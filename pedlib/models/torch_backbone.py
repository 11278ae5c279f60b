"""PyTorch backbones: a module with ``features`` and ``head``, and its input normalisation."""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from ..data.images import to_model_input
from ._spec import Backbone, ModelSpec

__all__ = ["TorchBackbone", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TorchBackbone(Backbone):
    """Wraps an ``nn.Module`` exposing ``features(x)`` (pooled penultimate) and ``head``.

    Inputs are scaled to 0..1 and, for ``"imagenet mean/std"`` models or when ``mean`` and
    ``std`` are given, standardised per channel. On CUDA the module runs channels-last under
    float16 autocast (features are returned as float32); on the CPU everything is float32.
    """

    def __init__(self, spec: ModelSpec, module: nn.Module, device: str | torch.device = "cpu",
                 mean=None, std=None):
        self.spec = spec
        self.module = module.eval()
        self.device = torch.device(device)
        if mean is None and spec.normalisation == "imagenet mean/std":
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        self._mean = None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._std = None if std is None else torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.module.to(self.device)
        if self.device.type == "cuda":
            self.module.to(memory_format=torch.channels_last)

    def preprocess(self, images: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
        """uint8 (N, H, W, C) -> the network's normalised float input (N, C', S, S) on ``device``."""
        x = to_model_input(images, self.spec.input_size, self.spec.channels, device) / 255.0
        if self._mean is not None:
            x = (x - self._mean.to(x.device)) / self._std.to(x.device)
        return x

    def autocast(self):
        """float16 autocast on CUDA, nothing on the CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    @torch.no_grad()
    def _features(self, images: np.ndarray) -> np.ndarray:
        x = self.preprocess(images, self.device)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            return self.module.features(x).float().cpu().numpy()
