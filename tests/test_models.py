"""Models: the pocket zoo loads, reads the right layer, and the PyTorch ports match the weights."""

import numpy as np
import pytest
import torch

from pedlib import assets, data, models
from pedlib.models.nets import CifarResNet

from conftest import needs_assets


def test_registry_has_the_17_distinct_pocket_models():
    names = models.list_models(zoo="pocket")
    assert len(names) == len(set(names)) == 17
    assert len(models.list_models(family="mobilenet")) == 8
    # every pocket model is a PyTorch module (the TFLite/Keras ones as ports): all fine-tunable
    assert set(models.list_models(zoo="pocket", trainable=True)) == set(names)
    assert {models.get_spec(n).runtime for n in names} == {"torch"}
    with pytest.raises(KeyError, match="did you mean .*'cifar_resnet20'"):
        models.get_spec("cifar_resnet2")


@needs_assets
@pytest.mark.parametrize("name", models.list_models(zoo="pocket"))
def test_every_model_extracts_finite_features_of_its_dimension(name):
    backbone = models.create_model(name)
    images = np.random.default_rng(0).integers(0, 256, size=(3, 40, 40, 3), dtype=np.uint8)
    features = backbone.extract(images, batch_size=2)
    assert features.shape[0] == 3 and features.dtype == np.float32 and np.isfinite(features).all()
    assert features.shape[1] in (64, 160, 200, 256, 512, 768, 1024, 1280)
    assert np.array_equal(features, backbone.extract(images, batch_size=2))  # deterministic
    # another batch size sums in another order: float32 rounding, not a different result
    assert np.allclose(features, backbone.extract(images, batch_size=3), rtol=1e-4, atol=1e-5)


@needs_assets
def test_tflite_features_are_the_pooled_layer():
    """The coral embedding extractor's output *is* its pooled layer: what the TFLite runtime
    (the ports' reference) reads must equal it."""
    from ai_edge_litert.interpreter import Interpreter

    from pedlib.models.tflite import TFLiteBackbone

    spec = models.get_spec("mobilenet_v1_1.0_224")
    backbone = TFLiteBackbone(spec, assets.resolve(spec.asset), pixels="quantized")
    images = np.random.default_rng(1).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
    ours = backbone.extract(images)
    path = assets.resolve(models.get_spec("mobilenet_v1_1.0_224").asset)
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    out = interpreter.get_output_details()[0]
    scale, zero = out["quantization"]
    for image, row in zip(images, ours):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
        interpreter.invoke()
        expected = (interpreter.get_tensor(out["index"]).reshape(-1).astype(np.float32) - zero) * scale
        assert np.allclose(row, expected, atol=scale + 1e-6)  # XNNPACK vs reference kernels: 1 LSB


@needs_assets
def test_cifar_resnet_port_classifies_cifar10_like_the_published_model():
    source = data.create("cifar10")
    indices = np.arange(0, 10000, 50)  # 200 images, 20 per class
    backbone = models.create_model("cifar_resnet20")
    with torch.no_grad():
        logits = backbone.module(backbone.preprocess(source.load(indices)))
    accuracy = (logits.argmax(1).numpy() == source.labels[indices]).mean()
    assert accuracy > 0.72  # ~80% on these lossy JPEGs (91.7% on the original PNGs)


@needs_assets
def test_lenet_port_classifies_mnist():
    source = data.create("mnist5k")
    indices = np.arange(0, 5000, 25)
    for name in ("lenet5_clean", "lenet5_adv"):
        backbone = models.create_model(name)
        with torch.no_grad():
            logits = backbone.module(backbone.preprocess(source.load(indices)))
        assert (logits.argmax(1).numpy() == source.labels[indices]).mean() > 0.95


def test_cifar_resnet_shortcut_pads_channels_and_rejects_bad_depth():
    net = CifarResNet(20).eval()
    assert net.features(torch.zeros(2, 3, 32, 32)).shape == (2, 64)
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert not any("shortcut" in k for k in net.state_dict())  # option A: parameter-free
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21)


@needs_assets
def test_a_tflite_backbone_prints_no_runtime_notice(capfd):
    from pedlib.models.tflite import TFLiteBackbone

    spec = models.get_spec("mlperf_resnet8")
    from pedlib.models.ports import PORTS

    TFLiteBackbone(spec, assets.resolve(PORTS["mlperf_resnet8"].reference), threads=1)
    printed = capfd.readouterr()
    assert "XNNPACK" not in printed.err and "INFO" not in printed.err


