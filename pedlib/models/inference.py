"""A module rewritten for CPU float32 inference, with less memory traffic and features that do
not depend on the batch.

On one core the 224-px MobileNets spent a third of their forward pass outside the
convolutions (measured with ``torch.profiler``, batch 64): writing ReLU6's output to a new
tensor and reading it back, and TensorFlow "SAME" padding (timm's ``Conv2dSame``), which
fills a whole new tensor with zeros before copying the input into it. :func:`for_cpu_inference`
returns a copy of the module's structure, sharing its parameters, in which, within each plain
``nn.Sequential``,

* a convolution followed by ReLU or ReLU6 is one oneDNN convolution with the activation
  applied to each output as it is written (a post-op),
* every other convolution is a oneDNN convolution too, and
* "SAME" padding writes each element of the padded input once.

Where PyTorch itself computes a convolution with oneDNN this changes no value: the primitive
is the same, clamping is exact, padding copies. PyTorch does not for 1x1 convolutions of
batches under 16 on one thread (its own im2col and GEMM, other rounding); there the rewrite's
features differ in the last bits from the module's, and, unlike the module's, they are the same
in any batch. :func:`fused_convolution_available` checks once per process that the fused
operator exists and agrees bit for bit with ``F.conv2d`` (followed by the activation) where
PyTorch uses oneDNN; where it does not (another PyTorch build), each convolution runs as
``F.conv2d`` with its activation in place after it. ``tests/test_inference.py`` checks the
bits on one pocket model of each architecture.
"""

from __future__ import annotations

import copy
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
    """A sequence of modules with each convolution made an :class:`_InferenceConv`, together
    with the ReLU/ReLU6 that follows it, if one does."""
    names, modules, fused = list(children), list(children.values()), {}
    i = 0
    while i < len(modules):
        module = modules[i]
        if not _fusable(module):
            fused[names[i]] = module
            i += 1
            continue
        bounds = _clamp_bounds(modules[i + 1] if i + 1 < len(modules) else None)
        fused[names[i]] = _InferenceConv(module, bounds)
        i += 1 if bounds is None else 2
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


def _same_padding(x: torch.Tensor, conv: nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int]]:
    """TensorFlow's "SAME" padding (before, after) of x's rows and columns for ``conv``, from
    timm's ``get_same_padding`` as its ``Conv2dSame`` computes it."""
    from timm.layers.padding import get_same_padding

    totals = [get_same_padding(size, kernel, stride, dilation) for size, kernel, stride, dilation
              in zip(x.shape[-2:], conv.kernel_size, conv.stride, conv.dilation)]
    return tuple((total // 2, total - total // 2) for total in totals)


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
            x = zero_pad(x, *_same_padding(x, conv))
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
    """Whether oneDNN's convolution operator with a post-op runs here and equals ``F.conv2d``
    (followed by the activation) bit for bit, with no activation, ReLU and ReLU6 (checked on a
    dense and a depthwise 3x3 convolution, channels-last, where PyTorch computes with oneDNN)."""
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
                plain = F.conv2d(x, weight, bias, 2, 1, 1, groups)
                for attr, scalars, expected in (("none", [], plain), ("relu", [], plain.relu()),
                                                ("hardtanh", [0.0, 6.0], plain.clamp(0.0, 6.0))):
                    fused = operator(x, weight, bias, [1, 1], [2, 2], [1, 1], groups, attr, scalars, "")
                    if not torch.equal(fused, expected):
                        return False
    except RuntimeError:
        return False
    return True
