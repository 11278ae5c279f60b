"""PyTorch modules for the pocket study's trainable models, written to load the published weights.

Every network exposes ``features(x) -> (N, D)`` (the pooled penultimate layer) and ``head``
(the classifier ``nn.Linear``), so feature extraction and fine-tuning treat them alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CifarResNet", "LeNet5", "MobileNetV1", "MobileNetV2", "MLPerfResNet"]


class _BasicBlock(nn.Module):
    """He et al.'s CIFAR basic block with the parameter-free "option A" shortcut.

    A shortcut that changes shape subsamples by 2 and zero-pads the new channels, as in
    the original CIFAR ResNets (and the akamaster weights, which have no shortcut convs).
    """

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes - in_planes if (stride != 1 or in_planes != planes) else None
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.pad is not None:
            shortcut = F.pad(x[:, :, ::self.stride, ::self.stride],
                             (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs (He et al. 2016, section 4.2): 16-32-64 channels.

    Parameters
    ----------
    depth : int
        20, 32, 44, 56, 110, ... (``(depth - 2) % 6 == 0``).
    num_classes : int, default 10
    """

    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(_BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.head = nn.Linear(64, num_classes)
        self.feature_dim = 64

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LeNet5(nn.Module):
    """advertorch's MNIST LeNet-5: two 3x3 conv + max-pool stages, then 3136 -> 200 -> 10.

    The penultimate layer is the 200-unit ReLU output of ``linear1``.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.linear1 = nn.Linear(7 * 7 * 64, 200)
        self.head = nn.Linear(200, num_classes)
        self.feature_dim = 200

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = F.max_pool2d(F.relu(self.conv1(x)), 2)
        out = F.max_pool2d(F.relu(self.conv2(out)), 2)
        return F.relu(self.linear1(out.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --------------------------------------------------------------------------- TensorFlow layouts
# The networks below are the architectures of TensorFlow/Keras models, written so that weights
# read from their .tflite / .h5 files load one to one (pedlib.models.ports). TensorFlow's
# "SAME" padding is asymmetric for a stride-2 convolution on an even input (one extra pixel
# right and bottom); timm's create_conv2d(padding="same") reproduces it, where torchvision's
# symmetric padding would shift every downsampling layer by a pixel.

def _same_conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
               bias: bool = True) -> nn.Module:
    from timm.layers import create_conv2d

    return create_conv2d(in_channels, out_channels, kernel, stride=stride, padding="same",
                         groups=groups, bias=bias)


_ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6}


class _ConvUnit(nn.Sequential):
    """Convolution (+ batch norm) (+ activation), TensorFlow "SAME" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, *,
                 groups: int = 1, batch_norm: bool = False, activation: str | None = "relu6",
                 bn_eps: float = 1e-3):
        layers = [_same_conv(in_channels, out_channels, kernel, stride, groups)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels, eps=bn_eps))
        if activation is not None:
            layers.append(_ACTIVATIONS[activation]())
        super().__init__(*layers)


class _Classifier(nn.Module):
    """Shared ``features``/``forward`` of the networks below: ``body``, global average pool,
    ``head`` (a linear classifier, or identity where the file has none)."""

    body: nn.Module

    def _make_head(self, num_classes: int | None):
        self.head = nn.Linear(self.feature_dim, num_classes) if num_classes else nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.body(x), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MobileNetV1(_Classifier):
    """MobileNetV1 (Howard et al. 2017) as TF-slim and Keras build it.

    Parameters
    ----------
    width : float
        Width multiplier; a layer of c channels gets ``max(int(c * width), 8)`` (slim's rule).
    num_classes : int or None
        Classifier outputs (1001 for the slim ImageNet models: class 0 is "background"); None
        for a feature extractor without classifier.
    activation : "relu6" (slim) or "relu" (the MLPerf Tiny Keras model)
    batch_norm : bool
        False where batch norm is folded into the convolutions (the .tflite files): each
        convolution then has its own bias.
    """

    _LAYERS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5,
               (1024, 2), (1024, 1))

    def __init__(self, width: float = 1.0, num_classes: int | None = 1001, *,
                 activation: str = "relu6", batch_norm: bool = False):
        super().__init__()
        depth = lambda c: max(int(c * width), 8)  # noqa: E731
        unit = dict(batch_norm=batch_norm, activation=activation)
        layers = [_ConvUnit(3, depth(32), 3, 2, **unit)]
        channels = depth(32)
        for out, stride in self._LAYERS:
            layers += [_ConvUnit(channels, channels, 3, stride, groups=channels, **unit),
                       _ConvUnit(channels, depth(out), 1, **unit)]
            channels = depth(out)
        self.body = nn.Sequential(*layers)
        self.feature_dim = channels
        self._make_head(num_classes)


class _InvertedResidual(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        layers = [_ConvUnit(in_channels, hidden, 1)] if expansion != 1 else []
        layers += [_ConvUnit(hidden, hidden, 3, stride, groups=hidden),
                   _ConvUnit(hidden, out_channels, 1, activation=None)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(_Classifier):
    """MobileNetV2 (Sandler et al. 2018) as TF-slim builds it, batch norm folded (conv + bias).

    The layout is torchvision's ``mobilenet_v2`` (same blocks and channels); the difference
    is the padding (TensorFlow "SAME") and a bias on every convolution in place of batch norm.
    ReLU6 after the expansion and depthwise convolutions, none after the projection.
    """

    _BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1))  # expansion, channels, repeats, first stride

    def __init__(self, width: float = 1.0, num_classes: int | None = 1001):
        super().__init__()
        from torchvision.models._utils import _make_divisible

        channels = _make_divisible(32 * width, 8)
        layers = [_ConvUnit(3, channels, 3, 2)]
        for expansion, out, repeats, stride in self._BLOCKS:
            out = _make_divisible(out * width, 8)
            for i in range(repeats):
                layers.append(_InvertedResidual(channels, out, stride if i == 0 else 1, expansion))
                channels = out
        self.feature_dim = _make_divisible(1280 * max(width, 1.0), 8)
        layers.append(_ConvUnit(channels, self.feature_dim, 1))
        self.body = nn.Sequential(*layers)
        self._make_head(num_classes)


class _MLPerfStage(nn.Module):
    """One residual stage of the MLPerf Tiny CIFAR-10 ResNet: conv-(BN)-ReLU-conv-(BN), plus a
    1x1 strided shortcut convolution (no batch norm) when the stage downsamples; ReLU after
    the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, batch_norm: bool):
        super().__init__()
        self.conv1 = _ConvUnit(in_channels, out_channels, 3, stride, batch_norm=batch_norm,
                               activation="relu")
        self.conv2 = _ConvUnit(out_channels, out_channels, 3, batch_norm=batch_norm, activation=None)
        self.shortcut = _same_conv(in_channels, out_channels, 1, stride) if stride != 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.conv2(self.conv1(x)) + shortcut)


class MLPerfResNet(_Classifier):
    """The MLPerf Tiny image-classification ResNet (``resnet_v1_eembc``: ResNet-8 with filters
    16-32-64; the "large" variant 40-80-160): a 3x3 stem, three residual stages (the last two
    downsample by 2), global average pooling, a linear classifier.

    ``batch_norm=False`` for the .tflite file, where batch norm is folded into the convolutions.
    """

    def __init__(self, filters=(16, 32, 64), num_classes: int = 10, *, batch_norm: bool = True):
        super().__init__()
        stem = _ConvUnit(3, filters[0], 3, batch_norm=batch_norm, activation="relu")
        stages = [_MLPerfStage(filters[0], filters[0], 1, batch_norm),
                  _MLPerfStage(filters[0], filters[1], 2, batch_norm),
                  _MLPerfStage(filters[1], filters[2], 2, batch_norm)]
        self.body = nn.Sequential(stem, *stages)
        self.feature_dim = filters[2]
        self._make_head(num_classes)
