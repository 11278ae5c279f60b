"""PyTorch backbones: a module with ``features`` and ``head``, and its input normalisation."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from torch import nn

from ..data.images import to_model_input
from ._spec import Backbone, ModelSpec
from .inference import for_cpu_inference

__all__ = ["TorchBackbone", "IMAGENET_MEAN", "IMAGENET_STD", "PRECISIONS", "exact_float32", "memory_format_for"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Feature-extraction precisions: float32 (TF32 off), or autocast to bfloat16 / float16.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextmanager
def exact_float32():
    """TF32 off for CUDA convolutions and matrix products while the block runs (PyTorch
    allows it for convolutions by default, which changes features in the 3rd-4th digit)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def memory_format_for(device: str | torch.device, precision: str = "fp32") -> torch.memory_format:
    """The layout a network runs fastest in for inference: channels-last on the CPU (oneDNN's
    layout: 2x for the MobileNets on one core) and for bf16/fp16 on CUDA (tensor cores), but
    NCHW for float32 on CUDA, where cuDNN's exact-fp32 convolutions are NCHW kernels and
    channels-last adds a transpose around each (ResNet-50, batch 256, on an H200: 3,690 img/s
    NCHW against 3,194 channels-last; bf16 15,481 channels-last against 10,268 NCHW)."""
    if torch.device(device).type == "cuda" and PRECISIONS[precision] is None:
        return torch.contiguous_format
    return torch.channels_last


class TorchBackbone(Backbone):
    """Wraps an ``nn.Module`` exposing ``features(x)`` (pooled penultimate) and ``head``.

    Inputs are scaled to 0..1 and, for ``"imagenet mean/std"`` models or when ``mean`` and
    ``std`` are given, standardised per channel. ``precision`` (:data:`PRECISIONS`) is the
    arithmetic of feature extraction: ``"fp32"`` (default; TF32 off on CUDA), or autocast to
    ``"bf16"``/``"fp16"`` (faster on a GPU; features are returned as float32 either way).
    The module runs in the layout of :func:`memory_format_for`.
    """

    def __init__(self, spec: ModelSpec, module: nn.Module, device: str | torch.device = "cpu",
                 mean=None, std=None, precision: str = "fp32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.precision = precision
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

    def memory_format(self) -> torch.memory_format:
        """The layout the module runs in (:func:`memory_format_for` its device and precision)."""
        return memory_format_for(self.device, self.precision)

    def autocast(self):
        """The context feature extraction runs in (see ``precision``)."""
        dtype = PRECISIONS[self.precision]
        if dtype is None:
            return exact_float32() if self.device.type == "cuda" else nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    @torch.no_grad()
    def _features(self, images) -> np.ndarray:
        # the layout of memory_format(), set here for a module put in ``module``'s place too
        layout = self.memory_format()
        if getattr(self, "_laid_out", (None, None)) != (self.module, layout):
            self.module.to(memory_format=layout)
            self._laid_out = self.module, layout
        x = self.preprocess(images, self.device).contiguous(memory_format=layout)
        with self.autocast():
            return self._inference_module().features(x).float().cpu().numpy()

    def _inference_module(self) -> nn.Module:
        """``module``, or on the CPU in float32 its rewrite by :func:`.inference.for_cpu_inference`
        (same parameters; convolutions and their activations fused in oneDNN)."""
        if self.device.type != "cpu" or PRECISIONS[self.precision] is not None:
            return self.module
        made_from, rewritten = getattr(self, "_rewritten", (None, None))
        if made_from is not self.module:
            rewritten = for_cpu_inference(self.module)
            self._rewritten = self.module, rewritten
        return rewritten
