"""The pocket zoo: 17 distinct small pretrained models from ``../shared/assets``, all PyTorch.

| name | weights from | input | normalisation | pretrained on |
|---|---|---|---|---|
| mobilenet_v1_0.25_128 / 0.5_160 / 0.75_192 | tflite uint8 (port) | 128/160/192 RGB | the quantized input's (p - 128) / 128 | ImageNet |
| mobilenet_v1_1.0_224 | tflite uint8 embedding extractor (port) | 224 RGB | (p - 128) / 128 | ImageNet |
| mobilenet_v2_1.0_224, tf2_mobilenet_v2_1.0_224 | tflite uint8 / int8 PTQ (port) | 224 RGB | (p - 128) / 128, (p - 127) / 127.5 | ImageNet |
| mobilenet_v2_inat_bird / _insect | tflite uint8 (port) | 224 RGB | (p - 128) / 128 | iNaturalist birds / insects |
| mlperf_resnet8 | Keras .h5 (port) | 32 RGB | pixels/255, stem x255 (trained on raw 0-255) | CIFAR-10 |
| mlperf_resnet_large | tflite float (port) | 32 RGB | pixels/255, stem x255 (trained on raw 0-255) | CIFAR-10 |
| mlperf_vww_mobilenet_v1_0.25 | Keras .h5 (port) | 96 RGB | pixels/255 | COCO person / no person |
| cifar_resnet20/32/44/56 | PyTorch state dict | 32 RGB | /255 then ImageNet mean/std | CIFAR-10 |
| lenet5_clean / lenet5_adv | PyTorch state dict | 28 gray | /255 | MNIST (clean / adversarial training) |

The eleven TFLite/Keras models are float PyTorch ports of those files
(:mod:`pedlib.models.ports`, checked against the files' own runtime by
:mod:`pedlib.models.port_check`): the port is the model of every stage, features, linear
probe, scores and fine-tuning alike, so what is scored is what is fine-tuned.
"""

from __future__ import annotations

import torch

from .. import assets
from ._spec import ModelSpec, register_model
from .nets import CifarResNet, LeNet5
from .ports import PORTS, load_port
from .torch_backbone import TorchBackbone


def load_torch_module(spec: ModelSpec, *, mirror=None) -> torch.nn.Module:
    """Build the module and load its published state dict (every key must match)."""
    path = assets.resolve(spec.asset, mirror=mirror)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint.get("state_dict", checkpoint)
    if spec.family == "resnet":
        module = CifarResNet(int(spec.name.rsplit("resnet", 1)[1]))
        state = {k.removeprefix("module.").replace("linear.", "head."): v for k, v in state.items()}
    else:
        module = LeNet5()
        state = {k.replace("linear2.", "head."): v for k, v in state.items()}
    module.load_state_dict(state, strict=True)
    return module


def _torch(spec: ModelSpec, *, mirror=None, device="cpu"):
    return TorchBackbone(spec, load_torch_module(spec, mirror=mirror), device=device)


def _port(spec: ModelSpec, *, mirror=None, device="cpu"):
    module, normalisation = load_port(spec.name, mirror=mirror)
    return TorchBackbone(spec, module, device=device, **normalisation)


_QUANTIZED = "(pixels - zero_point) * scale of the tflite file's quantized input"
_RAW = "pixels/255, stem weights x255 (the original takes raw 0-255)"
for name, size, source in [
    ("mobilenet_v1_0.25_128", 128, "imagenet"),
    ("mobilenet_v1_0.5_160", 160, "imagenet"),
    ("mobilenet_v1_0.75_192", 192, "imagenet"),
    ("mobilenet_v1_1.0_224", 224, "imagenet"),
    ("mobilenet_v2_1.0_224", 224, "imagenet"),
    ("tf2_mobilenet_v2_1.0_224", 224, "imagenet"),
    ("mobilenet_v2_inat_bird", 224, "inat_bird"),
    ("mobilenet_v2_inat_insect", 224, "inat_insect"),
]:
    register_model(ModelSpec(name=name, asset=PORTS[name].source, runtime="torch", input_size=size, channels=3,
                             normalisation=_QUANTIZED, source=source, family="mobilenet", trainable=True,
                             factory=_port))

for name, size, normalisation, source in (("mlperf_resnet8", 32, _RAW, "cifar10"),
                                          ("mlperf_resnet_large", 32, _RAW, "cifar10"),
                                          ("mlperf_vww_mobilenet_v1_0.25", 96, "pixels/255", "vww")):
    register_model(ModelSpec(name=name, asset=PORTS[name].source, runtime="torch", input_size=size, channels=3,
                             normalisation=normalisation, source=source, family="mlperf", trainable=True,
                             factory=_port))
for depth in (20, 32, 44, 56):
    register_model(ModelSpec(name=f"cifar_resnet{depth}", asset=f"models/cifar10_resnet{depth}.th", runtime="torch",
                             input_size=32, channels=3, normalisation="imagenet mean/std", source="cifar10",
                             family="resnet", trainable=True, factory=_torch))
for variant in ("clean", "adv"):
    register_model(ModelSpec(name=f"lenet5_{variant}", asset=f"models/mnist_lenet5_{variant}.pt", runtime="torch",
                             input_size=28, channels=1, normalisation="pixels/255", source="mnist5k",
                             family="lenet", trainable=True, factory=_torch))
