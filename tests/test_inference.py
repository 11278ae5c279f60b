"""The CPU inference rewrite (pedlib.models.inference): the module's own arithmetic, fused."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pedlib import models
from pedlib.models import inference


def _channels_last(*shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=generator) * 3).contiguous(memory_format=torch.channels_last)


def test_the_fused_convolution_runs_on_this_build():
    assert inference.fused_convolution_available()


@pytest.mark.parametrize("name", ["mobilenet_v2_1.0_224", "mobilenet_v1_0.25_128", "mlperf_vww_mobilenet_v1_0.25",
                                  "mlperf_resnet8", "cifar_resnet20", "lenet5_clean"])
def test_features_equal_the_modules_and_do_not_depend_on_batch_or_threads(name):
    """Where PyTorch computes a convolution with oneDNN (batches of 16 or more), the rewritten
    module gives the module's features bit for bit; and each image's features are the same in
    any batch of extraction (PyTorch itself computes 1x1 convolutions of smaller batches on one
    thread another way; batches of 1-3, which extraction does not make, differ for the CIFAR
    ResNets and LeNets) and on any number of threads. On two threads the batch is even: on an
    AVX-512 CPU (torch's capability "AVX512"), a LeNet's features in batches of 5, 7 or 11 on two
    threads differ from one thread's in the last bits (measured: 4-8 of 24 rows, up to 4e-6),
    while batches of 4, 8, 12, 16 and 24 agree; on AVX2 every batch size agreed."""
    backbone = models.create_model(name)
    size, channels = backbone.spec.input_size, backbone.spec.channels
    images = np.random.default_rng(1).integers(0, 256, size=(24, size, size, channels), dtype=np.uint8)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        whole = backbone.extract(images, batch_size=24)
        np.testing.assert_array_equal(backbone.extract(images, batch_size=5), whole)
        np.testing.assert_array_equal(backbone.extract(images, batch_size=11), whole)  # 11 + 13, not 11 + 11 + 2
        torch.set_num_threads(2)
        np.testing.assert_array_equal(backbone.extract(images, batch_size=8), whole)
        torch.set_num_threads(1)
        x = backbone.preprocess(images).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            plain = backbone.module.to(memory_format=torch.channels_last).features(x).numpy()
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(whole, plain)


def test_the_rewrite_fuses_convolution_and_activation_pairs_and_leaves_the_module_alone():
    net = models.nets.MobileNetV2(width=0.35, num_classes=None).eval()
    before = [type(m) for m in net.modules()]
    rewritten = inference.for_cpu_inference(net)
    assert [type(m) for m in net.modules()] == before  # the module is not changed
    assert {id(p) for p in rewritten.parameters()} == {id(p) for p in net.parameters()}  # nor copied
    fused = [m for m in rewritten.modules() if isinstance(m, inference._InferenceConv)]
    convolutions = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(fused) == len(convolutions)  # every convolution runs through oneDNN
    activations = sum(isinstance(m, nn.ReLU6) for m in net.modules())
    assert sum(m.bounds == (0.0, 6.0) for m in fused) == activations
    assert not any(isinstance(m, nn.ReLU6) for m in rewritten.modules())
    x = _channels_last(3, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_array_equal(rewritten.features(x).numpy(), net.features(x).numpy())


def test_only_plain_sequentials_are_restructured_and_hooks_are_kept():
    class Custom(nn.Sequential):
        def forward(self, x):
            return self[1](self[0](x)) * 2

    seen = []
    hooked = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    hooked[0].register_forward_hook(lambda module, args, out: seen.append(out.shape))
    net = nn.Sequential(Custom(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()), nn.Conv2d(4, 3, 1), hooked)
    rewritten = inference.for_cpu_inference(net)
    assert type(rewritten[0][1]) is nn.ReLU  # the custom forward indexes its children: untouched
    assert isinstance(rewritten[1], inference._InferenceConv) and rewritten[1].bounds is None
    assert type(rewritten[2][0]) is nn.Conv2d and type(rewritten[2][1]) is nn.ReLU  # the hook still runs
    x = _channels_last(2, 3, 8, 8)
    with torch.no_grad():
        np.testing.assert_array_equal(rewritten(x).numpy(), net(x).numpy())
    assert len(seen) == 2


def test_zero_pad_equals_f_pad_in_either_memory_format():
    for x in (_channels_last(2, 5, 7, 6), torch.randn(2, 5, 7, 6)):
        for rows, columns in (((0, 1), (0, 1)), ((2, 1), (0, 3)), ((0, 0), (1, 0)), ((0, 0), (0, 0))):
            padded = inference.zero_pad(x, rows, columns)
            expected = F.pad(x, (*columns, *rows))
            assert torch.equal(padded, expected)
            assert padded.is_contiguous(memory_format=torch.channels_last) == \
                x.is_contiguous(memory_format=torch.channels_last)


def test_without_the_fused_operator_the_activation_runs_in_place_after_the_convolution(monkeypatch):
    net = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU6(), nn.Conv2d(6, 5, 3), nn.ReLU())
    expected = net(_channels_last(16, 4, 10, 10)).detach()
    monkeypatch.setattr(inference, "fused_convolution_available", lambda: False)
    with torch.no_grad():
        assert torch.equal(inference.for_cpu_inference(net)(_channels_last(16, 4, 10, 10)), expected)


def test_a_backbone_rewrites_a_replaced_module_and_not_on_the_gpu_path():
    backbone = models.create_model("mlperf_resnet8")
    first = backbone._inference_module()
    assert first is not backbone.module and backbone._inference_module() is first  # made once
    backbone.module = models.nets.MLPerfResNet(num_classes=10).eval()
    assert backbone._inference_module() is not first
    weight = next(m.weight for m in backbone.module.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))
    assert not weight.is_contiguous(memory_format=torch.channels_last)
    backbone.extract(np.zeros((2, 32, 32, 3), dtype=np.uint8))
    assert weight.is_contiguous(memory_format=torch.channels_last)  # the new module runs channels-last too
    backbone.precision = "bf16"
    assert backbone._inference_module() is backbone.module


def test_each_device_and_precision_runs_in_its_faster_layout():
    from pedlib.models.torch_backbone import PRECISIONS, memory_format_for

    for precision in PRECISIONS:  # oneDNN's layout on the CPU; tensor cores' under autocast on CUDA
        assert memory_format_for("cpu", precision) == torch.channels_last
    assert memory_format_for("cuda", "bf16") == memory_format_for("cuda:0", "fp16") == torch.channels_last
    assert memory_format_for("cuda", "fp32") == torch.contiguous_format  # cuDNN's exact-fp32 kernels are NCHW
    backbone = models.create_model("mlperf_resnet8")
    assert backbone.memory_format() == torch.channels_last
    backbone.device = torch.device("cuda")  # the layout follows the backbone's device, not a global
    assert backbone.memory_format() == torch.contiguous_format
