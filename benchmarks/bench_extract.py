"""Feature-extraction throughput on the CPU, one thread (as the pocket study extracts), for
each pocket model: the module as written (channels-last) and the rewrite every extraction
runs (:mod:`pedlib.models.inference`: convolutions and their activations fused in oneDNN),
on generated images at the model's input size, batch 64, best of ``--repeats``; and whether
the rewrite's features equal the module's bit for bit.

    .venv/bin/python benchmarks/bench_extract.py
    .venv/bin/python benchmarks/bench_extract.py --models mobilenet_v2_1.0_224 cifar_resnet20
    .venv/bin/python benchmarks/bench_extract.py --arch resnet50   # a torchvision architecture, random weights

Prints a Markdown table. Run it under `make`'s environment (``MALLOC_*`` and the AVX2
settings of the Makefile) to measure what the study runs: ``make bench-extract``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pedlib.models import create_model, list_models
from pedlib.models.torch_backbone import TorchBackbone


def _best_rate(backbone, images: np.ndarray, batch_size: int, repeats: int) -> tuple[float, np.ndarray]:
    """(images per second, features), after one warm-up batch (oneDNN builds its primitives)."""
    backbone.extract(images[:batch_size], batch_size=batch_size)
    best, features = np.inf, None
    for _ in range(repeats):
        started = time.perf_counter()
        features = backbone.extract(images, batch_size=batch_size)
        best = min(best, time.perf_counter() - started)
    return len(images) / best, features


def _torchvision(arch: str):
    import torchvision

    from pedlib.models import ModelSpec
    from pedlib.models.hub import PooledFeatures, strip_classifier

    net, dim = strip_classifier(torchvision.models.get_model(arch, weights=None))
    spec = ModelSpec(arch, "", "torch", 224, 3, "imagenet mean/std", "none", arch, True)
    return TorchBackbone(spec, PooledFeatures(net, dim))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", help="pocket model names (default: every PyTorch pocket model)")
    parser.add_argument("--arch", help="a torchvision architecture (random weights) instead of the pocket models")
    parser.add_argument("--images", type=int, default=192, help="images per measurement (default 192)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    names = [args.arch] if args.arch else (args.models or list_models(zoo="pocket"))
    print(f"CPU, {args.threads} thread(s), batch {args.batch_size}, {args.images} images, best of {args.repeats}\n")
    print("| model | family | input | module img/s | rewritten img/s | rewritten / module | same bits |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        make = (lambda: _torchvision(name)) if args.arch else (lambda: create_model(name))
        plain, rewritten = make(), make()
        if not isinstance(plain, TorchBackbone):
            continue
        plain._inference_module = lambda backbone=plain: backbone.module  # the module as written
        spec = plain.spec
        shape = (args.images, spec.input_size, spec.input_size) + ((3,) if spec.channels == 3 else (1,))
        images = rng.integers(0, 256, size=shape, dtype=np.uint8)
        plain_rate, plain_features = _best_rate(plain, images, args.batch_size, args.repeats)
        rewritten_rate, rewritten_features = _best_rate(rewritten, images, args.batch_size, args.repeats)
        scale = max(np.abs(plain_features).max(), 1e-30)
        same = "yes" if np.array_equal(rewritten_features, plain_features) else \
            f"no ({np.abs(rewritten_features - plain_features).max() / scale:.1e})"
        print(f"| {name} | {spec.family} | {spec.input_size} | {plain_rate:.0f} | {rewritten_rate:.0f} | "
              f"{rewritten_rate / plain_rate:.2f} | {same} |",
              flush=True)


if __name__ == "__main__":
    main()
