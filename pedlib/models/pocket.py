"""The pocket zoo: 17 distinct small pretrained models from ``../shared/assets``.

| name | runtime | input | normalisation | pretrained on |
|---|---|---|---|---|
| mobilenet_v1_0.25_128 / 0.5_160 / 0.75_192 | tflite uint8 | 128/160/192 RGB | uint8 0-255 (quantized input) | ImageNet |
| mobilenet_v1_1.0_224 | tflite uint8 (embedding extractor) | 224 RGB | uint8 0-255 | ImageNet |
| mobilenet_v2_1.0_224, tf2_mobilenet_v2_1.0_224 | tflite uint8 / int8 PTQ | 224 RGB | uint8 0-255 | ImageNet |
| mobilenet_v2_inat_bird / _insect | tflite uint8 | 224 RGB | uint8 0-255 | iNaturalist birds / insects |
| mlperf_resnet8, mlperf_resnet_large | tflite float | 32 RGB | raw 0-255 float | CIFAR-10 |
| mlperf_vww_mobilenet_v1_0.25 | tflite float | 96 RGB | pixels/255 | COCO person / no person |
| cifar_resnet20/32/44/56 | torch | 32 RGB | /255 then ImageNet mean/std | CIFAR-10 |
| lenet5_clean / lenet5_adv | torch | 28 gray | /255 | MNIST (clean / adversarial training) |

The ``.h5`` Keras files of ResNet-8 and the VWW MobileNet are the same models as their
``.tflite`` files and are not registered twice.
"""

from __future__ import annotations

import torch

from .. import assets
from ._spec import ModelSpec, register_model
from .nets import CifarResNet, LeNet5
from .tflite import TFLiteBackbone
from .torch_backbone import TorchBackbone


def _tflite(spec: ModelSpec, *, mirror=None, threads: int = 2):
    return TFLiteBackbone(spec, assets.resolve(spec.asset, mirror=mirror), threads=threads)


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


_UINT8 = "uint8 0-255 (the model's quantized input)"
for name, asset, size, source in [
    ("mobilenet_v1_0.25_128", "mobilenet_v1_0.25_128_quant", 128, "imagenet"),
    ("mobilenet_v1_0.5_160", "mobilenet_v1_0.5_160_quant", 160, "imagenet"),
    ("mobilenet_v1_0.75_192", "mobilenet_v1_0.75_192_quant", 192, "imagenet"),
    ("mobilenet_v1_1.0_224", "mobilenet_v1_1.0_224_quant_embedding_extractor", 224, "imagenet"),
    ("mobilenet_v2_1.0_224", "mobilenet_v2_1.0_224_quant", 224, "imagenet"),
    ("tf2_mobilenet_v2_1.0_224", "tf2_mobilenet_v2_1.0_224_ptq", 224, "imagenet"),
    ("mobilenet_v2_inat_bird", "mobilenet_v2_1.0_224_inat_bird_quant", 224, "inat_bird"),
    ("mobilenet_v2_inat_insect", "mobilenet_v2_1.0_224_inat_insect_quant", 224, "inat_insect"),
]:
    register_model(ModelSpec(name, f"models/{asset}.tflite", "tflite", size, 3, _UINT8, source,
                             "mobilenet", False, _tflite))

register_model(ModelSpec("mlperf_resnet8", "models/mlperf_tiny_cifar10_resnet8.tflite", "tflite",
                         32, 3, "raw 0-255 float", "cifar10", "mlperf", False, _tflite))
register_model(ModelSpec("mlperf_resnet_large", "models/mlperf_tiny_cifar10_resnet_large_float.tflite",
                         "tflite", 32, 3, "raw 0-255 float", "cifar10", "mlperf", False, _tflite))
register_model(ModelSpec("mlperf_vww_mobilenet_v1_0.25",
                         "models/mlperf_tiny_vww96_mobilenet_v1_0.25_float.tflite", "tflite", 96, 3,
                         "pixels/255", "vww", "mlperf", False, _tflite))
for depth in (20, 32, 44, 56):
    register_model(ModelSpec(f"cifar_resnet{depth}", f"models/cifar10_resnet{depth}.th", "torch", 32,
                             3, "imagenet mean/std", "cifar10", "resnet", True, _torch))
for variant in ("clean", "adv"):
    register_model(ModelSpec(f"lenet5_{variant}", f"models/mnist_lenet5_{variant}.pt", "torch", 28, 1,
                             "pixels/255", "mnist5k", "lenet", True, _torch))
