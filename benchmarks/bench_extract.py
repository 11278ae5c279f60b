"""Feature-extraction throughput: images per second of a torchvision architecture (random
weights) at 224 px on generated images, on the CPU and, where available, on CUDA.

    python benchmarks/bench_extract.py --arch resnet50 --images 10000 --batch-size 128

Prints a Markdown table (device, images, seconds, images/s). This is issue 4's GPU check.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torchvision

from pedlib.models import ModelSpec
from pedlib.models.hub import _Features, strip_classifier
from pedlib.models.torch_backbone import TorchBackbone


def backbone(arch: str, device: str):
    net, dim = strip_classifier(torchvision.models.get_model(arch, weights=None))
    spec = ModelSpec(arch, "", "torch", 224, 3, "imagenet mean/std", "none", arch, True)
    return TorchBackbone(spec, _Features(net, dim), device=device)


def run(arch: str, device: str, images: np.ndarray, batch_size: int) -> float:
    model = backbone(arch, device)  # channels-last + float16 autocast on CUDA (TorchBackbone)
    model.extract(images[:batch_size], batch_size=batch_size)  # warm-up (cuDNN autotune, caches)
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    model.extract(images, batch_size=batch_size)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--cpu-images", type=int, default=256, help="the CPU path is slow: fewer images")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"| {args.arch} @224 | images | seconds | images/s |\n|---|---|---|---|")
    for device in devices:
        n = args.cpu_images if device == "cpu" else args.images
        images = rng.integers(0, 256, size=(n, 224, 224, 3), dtype=np.uint8)
        seconds = run(args.arch, device, images, args.batch_size)
        name = torch.cuda.get_device_name() if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
        print(f"| {name} | {n} | {seconds:.1f} | {n / seconds:.1f} |")


if __name__ == "__main__":
    main()
