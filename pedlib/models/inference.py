"""A module rewritten for CPU float32 inference, computing the same bits with less memory traffic.

On one core the 224-px MobileNets spent a third of their forward pass outside the
convolutions (measured with ``torch.profiler``, batch 64): writing ReLU6's output to a new
tensor and reading it back, and TensorFlow "SAME" padding (timm's ``Conv2dSame``), which
fills a whole new tensor with zeros before copying the input into it. :func:`for_cpu_inference`
returns a copy of the module's structure, sharing its parameters, in which

* a convolution followed by ReLU or ReLU6 in an ``nn.Sequential`` is one oneDNN convolution
  with the activation applied to each output as it is written (a post-op), and
* "SAME" padding writes each element of the padded input once.

Neither changes a value: the convolution is the same oneDNN primitive, clamping is exact, and
padding copies. :func:`fused_convolution_available` checks once per process that the fused
operator exists and agrees bit for bit with a convolution followed by the activation; where
it does not (another PyTorch build), the activation runs in place after the convolution.
The tests compare every pocket model's features with and without the rewrite, bit for bit.
"""

from __future__ import annotations

import copy
import math
import sys
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["for_cpu_inference", "fused_convolution_available"]


def for_cpu_inference(module: nn.Module) -> nn.Module:
    """A copy of ``module``'s tree for CPU float32 inference, sharing its parameters and buffers.

    ``module`` itself is left as it is (it may still be trained); the copy is for forward
    passes under ``torch.no_grad()``. Only the children of plain ``nn.Sequential`` containers
    are replaced (their forward calls each child in turn and reads nothing else of them).
    """
    clone = copy.copy(module)  # shares the parameter and buffer dicts
    children = {name: None if child is None else for_cpu_inference(child)
                for name, child in module._modules.items()}
    clone._modules = _fuse(children) if type(module).forward is nn.Sequential.forward else children
    return clone


def _fuse(children: dict) -> dict:
    """A sequence of modules with each (convolution, ReLU/ReLU6) pair made one module."""
    names, modules, fused = list(children), list(children.values()), {}
    i = 0
    while i < len(modules):
        module = modules[i]
        following = modules[i + 1] if i + 1 < len(modules) else None
        bounds = _clamp_bounds(following)
        if _fusable(module) and bounds is not None:
            fused[names[i]] = _InferenceConv(module, bounds)
            i += 2
            continue
        fused[names[i]] = _InferenceConv(module, None) if _fusable(module) else module
        i += 1
    return fused


def _fusable(module) -> bool:
    return (type(module) is nn.Conv2d or _same_padded(module)) and module.padding_mode == "zeros" \
        and not module._forward_hooks and not module._forward_pre_hooks


def _clamp_bounds(module) -> tuple[float, float | None] | None:
    """(low, high) of an activation that is a clamp (ReLU: high None), else None."""
    if module is None or module._forward_hooks or module._forward_pre_hooks:
        return None
    if type(module) is nn.ReLU:
        return 0.0, None
    if type(module) in (nn.ReLU6, nn.Hardtanh):
        return float(module.min_val), float(module.max_val)
    return None


def _same_padded(module) -> bool:
    """Whether ``module`` is timm's ``Conv2dSame`` (padding computed from each input's size)."""
    timm_same = sys.modules.get("timm.layers.conv2d_same")
    return timm_same is not None and type(module) is timm_same.Conv2dSame


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding (before, after) of one dimension, as timm computes it."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def zero_pad(x: torch.Tensor, rows: tuple[int, int], columns: tuple[int, int]) -> torch.Tensor:
    """``F.pad(x, (*columns, *rows))`` for an (N, C, H, W) tensor, in x's memory format, each
    element written once (``F.pad`` fills the whole result with zeros, then copies x in)."""
    if rows == columns == (0, 0):
        return x
    (top, bottom), (left, right) = rows, columns
    height, width = x.shape[-2:]
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    out = torch.empty((*x.shape[:-2], top + height + bottom, left + width + right), dtype=x.dtype,
                      device=x.device, memory_format=layout)
    out[..., :top, :].zero_()
    out[..., top + height:, :].zero_()
    out[..., top:top + height, :left].zero_()
    out[..., top:top + height, left + width:].zero_()
    out[..., top:top + height, left:left + width].copy_(x)
    return out


class _InferenceConv(nn.Module):
    """``conv`` (its own module, shared), then ``clamp(low, high)`` if ``bounds`` is given."""

    def __init__(self, conv: nn.Conv2d, bounds: tuple[float, float | None] | None):
        super().__init__()
        self.conv, self.bounds, self.same = conv, bounds, _same_padded(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        padding = conv.padding
        if self.same:
            x = zero_pad(x, *(_same_padding(size, kernel, stride, dilation) for size, kernel, stride, dilation
                              in zip(x.shape[-2:], conv.kernel_size, conv.stride, conv.dilation)))
            padding = (0, 0)
        low, high = self.bounds or (None, None)
        if not isinstance(padding, str) and x.dtype == torch.float32 and x.device.type == "cpu" \
                and fused_convolution_available():
            attr, scalars = ("none", []) if low is None else ("relu", []) if high is None else ("hardtanh", [low, high])
            return torch.ops.mkldnn._convolution_pointwise(
                x, conv.weight, conv.bias, list(padding), list(conv.stride), list(conv.dilation), conv.groups,
                attr, scalars, "")
        out = F.conv2d(x, conv.weight, conv.bias, conv.stride, padding, conv.dilation, conv.groups)
        return out if low is None else out.relu_() if high is None else out.clamp_(low, high)


@lru_cache(maxsize=1)
def fused_convolution_available() -> bool:
    """Whether oneDNN's convolution with a fused activation runs here and equals
    ``F.conv2d`` followed by the activation, bit for bit (checked on a dense and a depthwise
    convolution, channels-last, as the extraction runs them)."""
    try:
        operator = torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 9, 9, generator=generator).contiguous(memory_format=torch.channels_last) * 4
    try:
        with torch.no_grad():
            for weight, groups in ((torch.randn(16, 8, 3, 3, generator=generator), 1),
                                   (torch.randn(8, 1, 3, 3, generator=generator), 8)):
                bias = torch.randn(weight.shape[0], generator=generator)
                fused = operator(x, weight, bias, [1, 1], [2, 2], [1, 1], groups, "hardtanh", [0.0, 6.0], "")
                plain = F.conv2d(x, weight, bias, 2, 1, 1, groups).clamp_(0.0, 6.0)
                relu = operator(x, weight, bias, [1, 1], [2, 2], [1, 1], groups, "relu", [], "")
                if not (torch.equal(fused, plain) and torch.equal(relu, F.conv2d(x, weight, bias, 2, 1, 1, groups).relu_())):
                    return False
    except RuntimeError:
        return False
    return True
