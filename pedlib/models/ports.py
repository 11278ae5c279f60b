"""Float PyTorch ports of the pocket zoo's TFLite and Keras models, and their agreement check.

The pocket study fine-tunes every model, so each model must be a trainable PyTorch module
whose features are the ones the study scores. The eight coral MobileNets (uint8 or int8
quantized ``.tflite``), the MLPerf Tiny ResNet-8 and VWW MobileNet (Keras ``.h5``) and the
larger MLPerf ResNet (float ``.tflite``) are therefore *ported*:

1. every constant tensor (weights, biases, batch-norm statistics) is read from the very file
   in ``../shared/assets``: ``.tflite`` through the TFLite interpreter without delegates (its
   quantization parameters included), ``.h5`` with h5py;
2. quantized tensors are dequantized, ``real = (q - zero_point) * scale``, with one scale and
   zero point per tensor or per output channel (``quantized_dimension``), into float32;
3. the tensors are transposed to PyTorch's layouts and loaded into the matching network of
   :mod:`pedlib.models.nets`, layer by layer in graph order, every shape checked. Batch norm
   is folded into the convolutions of the ``.tflite`` files, so those ports have conv + bias;
   the ``.h5`` ports keep batch norm with the stored statistics.

The port's input is the float value the original model sees: for a quantized input tensor
``(pixels - zero_point) * scale`` with the file's own parameters, pixels / 255 for the VWW
MobileNet. The MLPerf ResNets were trained on raw 0-255 pixels; their ports take pixels / 255
and multiply the stem convolution's weights by 255 instead, the same function (a convolution
is linear in its input, and zero padding is zero either way). The reason is fine-tuning: on
raw pixels the stem's gradient is about 100 times the other layers', and one SGD step at
learning rate 1e-4 already blows the features up (measured on ``mlperf_resnet_large``).

A converted port is cached in the user cache (``$PEDLIB_CACHE/ports``) under a key made of
the source file's sha256 and this converter's code, with a provenance record: it is
converted on first use and never committed.

:mod:`pedlib.models.port_check` compares each port with its original runtime.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .. import assets, records
from ..codegraph import code_version
from .nets import MLPerfResNet, MobileNetV1, MobileNetV2

__all__ = ["Port", "PORTS", "PortMismatch", "read_tflite_layers", "read_keras_layers", "load_layers",
           "convert", "load_port", "port_input"]


class PortMismatch(RuntimeError):
    """A file's layers do not fit the network, or a port disagrees with its original runtime."""


@dataclass(frozen=True)
class Port:
    """How one pocket model is ported.

    Attributes
    ----------
    name : str
        The pocket model name.
    source : str
        Manifest path of the file the weights are read from (``.tflite`` or ``.h5``).
    reference : str
        Manifest path of the ``.tflite`` model the port is checked against.
    build : callable () -> nn.Module
        The empty network (:mod:`pedlib.models.nets`).
    pixels : "quantized", "raw" or "unit"
        What the original takes: the quantized input tensor's real value, raw 0-255 (the
        port takes pixels / 255 and scales its stem by 255), or pixels / 255.
    """

    name: str
    source: str
    reference: str
    build: Callable[[], nn.Module]
    pixels: str = "quantized"


def _coral(name: str, file: str, build: Callable[[], nn.Module]) -> Port:
    path = f"models/{file}.tflite"
    return Port(name, path, path, build)


PORTS: dict[str, Port] = {port.name: port for port in [
    _coral("mobilenet_v1_0.25_128", "mobilenet_v1_0.25_128_quant", partial(MobileNetV1, 0.25)),
    _coral("mobilenet_v1_0.5_160", "mobilenet_v1_0.5_160_quant", partial(MobileNetV1, 0.5)),
    _coral("mobilenet_v1_0.75_192", "mobilenet_v1_0.75_192_quant", partial(MobileNetV1, 0.75)),
    _coral("mobilenet_v1_1.0_224", "mobilenet_v1_1.0_224_quant_embedding_extractor",
           partial(MobileNetV1, 1.0, None)),
    _coral("mobilenet_v2_1.0_224", "mobilenet_v2_1.0_224_quant", MobileNetV2),
    _coral("tf2_mobilenet_v2_1.0_224", "tf2_mobilenet_v2_1.0_224_ptq", MobileNetV2),
    _coral("mobilenet_v2_inat_bird", "mobilenet_v2_1.0_224_inat_bird_quant", partial(MobileNetV2, 1.0, 965)),
    _coral("mobilenet_v2_inat_insect", "mobilenet_v2_1.0_224_inat_insect_quant",
           partial(MobileNetV2, 1.0, 1022)),
    Port("mlperf_resnet8", "models/mlperf_tiny_cifar10_resnet8.h5",
         "models/mlperf_tiny_cifar10_resnet8.tflite", partial(MLPerfResNet, (16, 32, 64)), "raw"),
    Port("mlperf_resnet_large", "models/mlperf_tiny_cifar10_resnet_large_float.tflite",
         "models/mlperf_tiny_cifar10_resnet_large_float.tflite",
         partial(MLPerfResNet, (40, 80, 160), batch_norm=False), "raw"),
    Port("mlperf_vww_mobilenet_v1_0.25", "models/mlperf_tiny_vww96_mobilenet_v1_0.25.h5",
         "models/mlperf_tiny_vww96_mobilenet_v1_0.25_float.tflite",
         partial(MobileNetV1, 0.25, 2, activation="relu", batch_norm=True), "unit"),
]}

#: One parametrised layer read from a file: its kind ("conv", "bn" or "dense") and its
#: tensors in PyTorch's layout (conv: weight (O, I/groups, H, W), bias; dense: weight (O, I),
#: bias; bn: weight, bias, running_mean, running_var).
Layer = tuple[str, str, dict[str, np.ndarray]]

_POOLS = ("AVERAGE_POOL_2D", "MEAN")


# --------------------------------------------------------------------------- reading files
def _interpreter(path):
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_path=str(path), num_threads=1,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """``(q - zero_point) * scale``, per tensor or along ``quantized_dimension``."""
    quantization = detail["quantization_parameters"]
    scales = np.asarray(quantization["scales"], dtype=np.float64)
    if scales.size == 0:  # a float tensor
        return values.astype(np.float32)
    zeros = np.asarray(quantization["zero_points"], dtype=np.float64)
    if scales.size > 1:
        shape = [1] * values.ndim
        shape[quantization["quantized_dimension"]] = scales.size
        scales, zeros = scales.reshape(shape), zeros.reshape(shape)
    return ((values.astype(np.float64) - zeros) * scales).astype(np.float32)


def read_tflite_layers(path) -> list[Layer]:
    """The convolution and fully connected layers of a ``.tflite`` file, in graph order.

    A 1x1 convolution after the last global pooling op (the slim models' logits) is read as
    a dense layer. Returns ``[(kind, tensor name, {"weight", "bias"})]``, float32 in PyTorch's
    layouts.
    """
    interpreter = _interpreter(path)
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    pools = [op["index"] for op in ops if op["op_name"] in _POOLS]
    last_pool = pools[-1] if pools else len(ops)
    layers: list[Layer] = []
    for op in ops:
        kind = op["op_name"]
        if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        weight_index, bias_index = int(op["inputs"][1]), int(op["inputs"][2])
        weight = _dequantize(interpreter.get_tensor(weight_index), details[weight_index])
        bias = (_dequantize(interpreter.get_tensor(bias_index), details[bias_index])
                if bias_index >= 0 else np.zeros(weight.shape[-1 if kind == "DEPTHWISE_CONV_2D" else 0],
                                                 dtype=np.float32))
        if kind == "DEPTHWISE_CONV_2D":  # (1, H, W, C) -> (C, 1, H, W)
            weight = weight.transpose(3, 0, 1, 2)
        elif kind == "CONV_2D":  # (O, H, W, I) -> (O, I, H, W)
            weight = weight.transpose(0, 3, 1, 2)
        if kind == "FULLY_CONNECTED" or op["index"] > last_pool:
            layers.append(("dense", details[weight_index]["name"], {"weight": weight.reshape(len(weight), -1),
                                                                    "bias": bias}))
        else:
            layers.append(("conv", details[weight_index]["name"], {"weight": np.ascontiguousarray(weight),
                                                                   "bias": bias}))
    return layers


def read_keras_layers(path) -> list[Layer]:
    """The Conv2D, DepthwiseConv2D, BatchNormalization and Dense layers of a Keras ``.h5``
    file, in the order of the model's config, as float32 tensors in PyTorch's layouts."""
    import h5py

    with h5py.File(path, "r") as file:
        if "model_config" not in file.attrs or "model_weights" not in file:
            raise PortMismatch(f"{path}: not a Keras model file (no model_config / model_weights)")
        config = json.loads(file.attrs["model_config"])
        weights = file["model_weights"]

        def tensors(layer: str) -> dict[str, np.ndarray]:
            found = {}
            weights[layer].visititems(lambda name, item: found.__setitem__(
                name.rsplit("/", 1)[-1].split(":")[0], np.asarray(item, dtype=np.float32))
                if isinstance(item, h5py.Dataset) else None)
            return found

        layers: list[Layer] = []
        for layer in config["config"]["layers"]:
            kind, name = layer["class_name"], layer["config"]["name"]
            if kind == "Conv2D":  # kernel (H, W, I, O) -> (O, I, H, W)
                t = tensors(name)
                layers.append(("conv", name, {"weight": t["kernel"].transpose(3, 2, 0, 1).copy(),
                                              "bias": t["bias"]}))
            elif kind == "DepthwiseConv2D":  # (H, W, C, M) -> (C * M, 1, H, W)
                t = tensors(name)
                h, w, c, m = t["depthwise_kernel"].shape
                kernel = t["depthwise_kernel"].transpose(2, 3, 0, 1).reshape(c * m, 1, h, w).copy()
                layers.append(("conv", name, {"weight": kernel, "bias": t["bias"]}))
            elif kind == "BatchNormalization":
                t = tensors(name)
                layers.append(("bn", name, {"weight": t["gamma"], "bias": t["beta"],
                                            "running_mean": t["moving_mean"],
                                            "running_var": t["moving_variance"]}))
            elif kind == "Dense":  # (I, O) -> (O, I)
                t = tensors(name)
                layers.append(("dense", name, {"weight": t["kernel"].T.copy(), "bias": t["bias"]}))
    return layers


def _module_layers(module: nn.Module) -> list[tuple[str, str, nn.Module]]:
    kinds = ((nn.Conv2d, "conv"), (nn.BatchNorm2d, "bn"), (nn.Linear, "dense"))
    return [(next(k for cls, k in kinds if isinstance(m, cls)), name, m)
            for name, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear))]


def load_layers(module: nn.Module, layers: list[Layer], where: str = "file") -> nn.Module:
    """Copy ``layers`` into ``module``'s convolutions, batch norms and linear layers.

    Layers of each kind are matched in order (a file may list a shortcut convolution before
    the batch norm of the branch beside it); every tensor's shape must match exactly and every
    layer of the module must receive weights, else :class:`PortMismatch` names the first
    disagreement.
    """
    state = {}
    for kind in ("conv", "bn", "dense"):
        ours = [(name, m) for k, name, m in _module_layers(module) if k == kind]
        theirs = [(name, tensors) for k, name, tensors in layers if k == kind]
        if len(ours) != len(theirs):
            raise PortMismatch(f"{where}: {len(theirs)} {kind} layers, the network has {len(ours)}")
        for (name, layer), (source_name, tensors) in zip(ours, theirs):
            expected = {key: tuple(value.shape) for key, value in layer.state_dict().items()
                        if key != "num_batches_tracked"}
            got = {key: tuple(value.shape) for key, value in tensors.items()}
            if expected != got:
                raise PortMismatch(f"{where}: layer {source_name!r} has shapes {got}, the network's "
                                   f"{name!r} expects {expected}")
            state.update({f"{name}.{key}": torch.from_numpy(np.ascontiguousarray(value))
                          for key, value in tensors.items()})
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise PortMismatch(f"{where}: weights missing for {missing[:5]}, unused {unexpected[:5]}")
    return module


def port_input(port: Port, *, mirror=None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) that map pixels / 255 to the port's input, per channel (see module docstring)."""
    if port.pixels in ("raw", "unit"):  # raw: the stem absorbs the factor 255 (see convert)
        return (0.0,) * 3, (1.0,) * 3
    detail = _interpreter(assets.resolve(port.reference, mirror=mirror)).get_input_details()[0]
    scale, zero = detail["quantization"]
    if not scale:
        raise PortMismatch(f"{port.reference}: the input is not quantized; set the port's pixels")
    # (p - zero) * scale = (p / 255 - zero / 255) / (1 / (255 scale))
    return (zero / 255,) * 3, (1 / (255 * scale),) * 3


# --------------------------------------------------------------------------- conversion + cache
def convert(port: Port, *, mirror=None) -> nn.Module:
    """Build ``port``'s network with the weights of its source file (not cached)."""
    path = assets.resolve(port.source, mirror=mirror)
    reader = read_keras_layers if path.suffix == ".h5" else read_tflite_layers
    module = load_layers(port.build(), reader(path), where=str(path)).eval()
    if port.pixels == "raw":  # take pixels / 255 instead of 0-255: the stem absorbs the 255
        stem = next(m for m in module.modules() if isinstance(m, nn.Conv2d))
        with torch.no_grad():
            stem.weight.mul_(255.0)
    return module


def load_port(name: str, *, mirror=None, cache=None) -> tuple[nn.Module, dict]:
    """The port ``name`` (converted on first use, then read from the cache) and its input
    normalisation ``{"mean", "std"}``."""
    port = PORTS[name]
    sha256 = assets.manifest()[port.source].sha256
    key = records.content_key("port", name, sha256, port.pixels, code_version(__name__))
    path = Path(cache or assets.default_cache()) / "ports" / f"{name}.pt"
    module = port.build().eval()
    if records.is_fresh(path, key):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(saved["state_dict"])
        return module, {"mean": tuple(saved["mean"]), "std": tuple(saved["std"])}
    started = time.perf_counter()
    module = convert(port, mirror=mirror)
    mean, std = port_input(port, mirror=mirror)
    payload = {"state_dict": module.state_dict(), "mean": list(mean), "std": list(std)}
    records.atomic_write(path, lambda tmp: torch.save(payload, tmp))
    records.write_record(path, key, inputs={"model": name, "source": port.source, "sha256": sha256},
                         extra={"converter": "pedlib.models.ports", "seconds": time.perf_counter() - started})
    return module, {"mean": mean, "std": std}
