"""Ports of the TFLite / Keras models: weights land where they should, and the check's bars."""

import json
import warnings

import h5py
import numpy as np
import pytest
import torch

from pedlib import assets, data, models
from pedlib.models import port_check, ports
from pedlib.models.nets import MLPerfResNet, MobileNetV1, MobileNetV2
from pedlib.models.tflite import TFLiteBackbone

from conftest import needs_assets


def _cifar_images(n=16, size=32):
    source = data.create("cifar10")
    return port_check.resize_to(source.load(np.arange(0, 10000, 10000 // n)[:n]), size)


def _port_logits(name, images):
    backbone = models.create_model(name)
    with torch.no_grad():
        return backbone.module(backbone.preprocess(images)).numpy(), backbone


@needs_assets
@pytest.mark.parametrize("name", ["mlperf_resnet_large", "mlperf_resnet8"])
def test_float_port_logits_equal_the_tflite_models_logits(name):
    """mlperf_resnet_large comes from the float .tflite itself, mlperf_resnet8 from its Keras
    .h5: both must compute what the float .tflite computes, to float32 rounding."""
    images = _cifar_images()
    ours, backbone = _port_logits(name, images)
    original = TFLiteBackbone(backbone.spec, assets.resolve(ports.PORTS[name].reference), threads=1,
                              pixels="raw")
    features, logits = original.run(images)
    assert np.abs(ours - logits).max() < 1e-4
    assert np.abs(backbone.extract(images) - features).max() < 1e-4


@needs_assets
def test_keras_vww_port_equals_its_tflite_twin():
    name = "mlperf_vww_mobilenet_v1_0.25"
    images = port_check.resize_for(name, data.create("lfw").load(np.arange(0, 200, 25)))
    result = port_check.check_port(name, images)
    assert result["cosine_min"] > 0.99999 and result["top1_agreement"] == 1.0


@needs_assets
def test_quantized_port_first_layer_matches_the_tflite_activation_within_a_step():
    """The uint8 MobileNet's first conv (+ ReLU6) output, read from the interpreter, equals
    the port's first layer up to the output's quantization step: the dequantized weights,
    their layout, the input scaling and TensorFlow's SAME padding are right."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    name = "mobilenet_v1_0.25_128"
    path = assets.resolve(ports.PORTS[name].source)
    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    first = interpreter._get_ops_details()[0]
    output = next(t for t in interpreter.get_tensor_details() if t["index"] == first["outputs"][0])
    scale, zero = output["quantization"]
    images = port_check.resize_for(name, data.create("flowers12").load(np.arange(3)))
    backbone = models.create_model(name)
    with torch.no_grad():
        ours = backbone.module.body[0](backbone.preprocess(images)).permute(0, 2, 3, 1).numpy()
    for image, mine in zip(images, ours):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
        interpreter.invoke()
        theirs = (interpreter.get_tensor(output["index"])[0].astype(np.float32) - zero) * scale
        assert theirs.shape == mine.shape == (64, 64, 8)
        assert np.abs(theirs - mine).max() <= 1.01 * scale  # rounding to the uint8 grid


def test_dequantize_per_channel_along_the_quantized_dimension():
    q = np.arange(12, dtype=np.int8).reshape(1, 2, 2, 3)
    detail = {"quantization_parameters": {"scales": np.array([0.5, 1.0, 2.0]),
                                          "zero_points": np.array([0, 1, 2]), "quantized_dimension": 3}}
    out = ports._dequantize(q, detail)
    expected = (q - np.array([0, 1, 2])) * np.array([0.5, 1.0, 2.0])
    assert out.dtype == np.float32 and np.array_equal(out, expected.astype(np.float32))
    per_tensor = {"quantization_parameters": {"scales": np.array([0.25]), "zero_points": np.array([128]),
                                              "quantized_dimension": 0}}
    assert ports._dequantize(np.array([128, 132], dtype=np.uint8), per_tensor).tolist() == [0.0, 1.0]
    floats = {"quantization_parameters": {"scales": np.array([]), "zero_points": np.array([]),
                                          "quantized_dimension": 0}}
    assert ports._dequantize(np.array([1.5]), floats).tolist() == [1.5]


def _write_keras(path, layers, weights):
    with h5py.File(path, "w") as file:
        file.attrs["model_config"] = json.dumps({"class_name": "Functional", "config": {"layers": [
            {"class_name": kind, "config": {"name": name}} for kind, name in layers]}})
        group = file.create_group("model_weights")
        for layer, tensors in weights.items():
            for key, value in tensors.items():
                group.create_dataset(f"{layer}/{layer}/{key}:0", data=value)


def test_keras_reader_transposes_kernels_to_torch_layouts(tmp_path):
    """Hand-checked index by index: Conv2D (H, W, I, O) -> (O, I, H, W); DepthwiseConv2D
    (H, W, C, M) -> (C * M, 1, H, W) with output channel c * M + m; Dense (I, O) -> (O, I)."""
    rng = np.random.default_rng(0)
    conv, depthwise, dense = (rng.normal(size=s).astype(np.float32) for s in ((3, 3, 2, 4), (3, 3, 4, 2), (8, 5)))
    _write_keras(tmp_path / "m.h5", [("InputLayer", "in"), ("Conv2D", "c"), ("DepthwiseConv2D", "d"),
                                     ("BatchNormalization", "b"), ("Dense", "f")],
                 {"c": {"kernel": conv, "bias": np.zeros(4, np.float32)},
                  "d": {"depthwise_kernel": depthwise, "bias": np.ones(8, np.float32)},
                  "b": {"gamma": np.ones(8), "beta": np.zeros(8), "moving_mean": np.arange(8.0),
                        "moving_variance": np.full(8, 2.0)},
                  "f": {"kernel": dense, "bias": np.zeros(5, np.float32)}})
    layers = ports.read_keras_layers(tmp_path / "m.h5")
    assert [(kind, name) for kind, name, _ in layers] == [("conv", "c"), ("conv", "d"), ("bn", "b"), ("dense", "f")]
    c, d, b, f = (tensors for _, _, tensors in layers)
    for o, i, h, w in np.ndindex(4, 2, 3, 3):
        assert c["weight"][o, i, h, w] == conv[h, w, i, o]
    for ch, m, h, w in np.ndindex(4, 2, 3, 3):
        assert d["weight"][ch * 2 + m, 0, h, w] == depthwise[h, w, ch, m]
    assert np.array_equal(f["weight"], dense.T) and b["running_var"].tolist() == [2.0] * 8
    with pytest.raises(ports.PortMismatch, match="not a Keras model"):
        (tmp_path / "empty.h5").write_bytes(b"")
        with h5py.File(tmp_path / "empty.h5", "w"):
            pass
        ports.read_keras_layers(tmp_path / "empty.h5")


@needs_assets
def test_a_file_that_does_not_fit_the_network_names_the_layer():
    layers = ports.read_tflite_layers(assets.resolve("models/mobilenet_v1_0.25_128_quant.tflite"))
    with pytest.raises(ports.PortMismatch, match=r"expects .*'weight': \(16, 3, 3, 3\)"):
        ports.load_layers(MobileNetV1(0.5), layers, where="test")
    with pytest.raises(ports.PortMismatch, match="conv layers, the network has"):
        ports.load_layers(MobileNetV2(), layers, where="test")


@needs_assets
def test_ports_are_cached_by_source_and_converter(tmp_path):
    first, normalisation = ports.load_port("mlperf_resnet8", cache=tmp_path)
    cached = tmp_path / "ports" / "mlperf_resnet8.pt"
    assert cached.is_file() and normalisation == {"mean": (0.0,) * 3, "std": (1.0,) * 3}
    stamp = cached.stat().st_mtime_ns
    second, _ = ports.load_port("mlperf_resnet8", cache=tmp_path)
    assert cached.stat().st_mtime_ns == stamp  # read back, not converted again
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_tf_same_padding_pads_the_extra_pixel_right_and_bottom():
    """A stride-2 3x3 convolution on an even input: TensorFlow pads 0 before and 1 after."""
    net = MLPerfResNet((2, 2, 2), batch_norm=False)
    conv = net.body[1 + 1].conv1[0]  # the first downsampling convolution
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 0, 0] = 1.0  # output(y, x) = sum over channels of input(2y - top, 2x - left)
        conv.bias.zero_()
        x = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(1, 2, 8, 8)
        y = conv(x)
    assert y.shape[-2:] == (4, 4)
    assert y[0, 0, 0, 0] == x[0, :, 0, 0].sum()  # no padding before: tap (0, 0) is pixel (0, 0)


def _result(**overrides):
    return {"model": "mlperf_resnet8", "reference": "x.tflite", "images": 8, "cosine_median": 1.0,
            "cosine_min": 1.0, "top1_agreement": 1.0, "seconds": 0.1, **overrides}


@needs_assets
def test_check_bars_raise_for_float_ports_and_note_quantized_top1():
    assert port_check.assess(_result())["note"] == ""
    with pytest.raises(ports.PortMismatch, match="median cosine 0.9000 < 0.97"):
        port_check.assess(_result(cosine_median=0.9))
    with pytest.raises(ports.PortMismatch, match="top-1 agreement 0.800 < 0.9"):
        port_check.assess(_result(top1_agreement=0.8))  # a float original must agree
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a quantized original's shortfall is a note, not a warning per port
        assessed = port_check.assess(_result(model="mobilenet_v2_1.0_224", top1_agreement=0.8))
    assert assessed["quantized"] and "quantized" in assessed["note"]
    with pytest.raises(ports.PortMismatch, match="median cosine"):  # quantized, but features off
        port_check.assess(_result(model="mobilenet_v2_1.0_224", top1_agreement=0.8, cosine_median=0.5))
