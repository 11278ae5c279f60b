"""Datasets: the pocket targets from the real assets, splits, user folders, model input."""

import numpy as np
import pytest
import torch
from PIL import Image

from pedlib import data
from pedlib.data.images import to_model_input

from conftest import needs_assets


@needs_assets
@pytest.mark.parametrize("name, n, n_classes, channels, size", [
    ("flowers12", 960, 12, 3, 224), ("cifar10", 10000, 10, 3, 32), ("mnist5k", 5000, 10, 1, 28),
    ("digits", 1797, 10, 1, 8), ("lfw", 200, 2, 1, 25)])
def test_pocket_targets_have_their_documented_size_and_format(name, n, n_classes, channels, size):
    source = data.create(name)
    assert len(source) == n and len(source.classes) == n_classes and source.channels == channels
    images = source.load([0, len(source) - 1])
    assert images.shape == (2, size, size, channels) and images.dtype == np.uint8
    assert images.max() > images.min()


@needs_assets
def test_flowers_keeps_its_own_split_and_mnist_label_is_the_last_column():
    flowers = data.create("flowers12")
    split = data.split(flowers, seed=0)
    assert (len(split.train), len(split.test)) == (720, 240)
    assert np.all(np.bincount(flowers.labels[split.train]) == 60)
    mnist = data.create("mnist5k")
    assert set(np.unique(mnist.labels)) == set(range(10))
    # a '1' is a thin vertical stroke: far fewer lit pixels than a '0'
    ones, zeros = mnist.load(np.flatnonzero(mnist.labels == 1)[:50]), mnist.load(np.flatnonzero(mnist.labels == 0)[:50])
    assert (ones > 128).sum() < 0.7 * (zeros > 128).sum()


def _toy_source(labels):
    labels = np.asarray(labels)
    images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1, 1)
    return data.ImageSource("toy", labels, tuple(str(c) for c in range(labels.max() + 1)),
                            lambda idx: images[idx], 1, "toy")


def test_split_is_stratified_seeded_and_capped():
    source = _toy_source(np.repeat(np.arange(3), [40, 30, 20]))
    a = data.split(source, seed=3, train_per_class=5, test_per_class=4)
    b = data.split(source, seed=3, train_per_class=5, test_per_class=4)
    c = data.split(source, seed=4, train_per_class=5, test_per_class=4)
    assert np.array_equal(a.train, b.train) and not np.array_equal(a.train, c.train)
    assert np.all(np.bincount(source.labels[a.train]) == 5)
    assert np.all(np.bincount(source.labels[a.test]) == 4)
    assert not set(a.train) & set(a.test)
    full = data.split(source, seed=0, test_fraction=0.5)
    assert len(full.train) + len(full.test) == 90


def test_split_names_classes_left_without_images():
    source = _toy_source(np.repeat(np.arange(3), [40, 30, 1]))
    with pytest.raises(ValueError, match=r"classes \['2'\] have fewer than 2 images"):
        data.split(source, seed=0)
    with pytest.raises(ValueError, match="train_per_class must be a positive integer"):
        data.split(_toy_source(np.repeat(np.arange(2), 10)), seed=0, train_per_class=0)


def test_unknown_dataset_lists_close_matches():
    with pytest.raises(KeyError, match="did you mean 'flowers12'"):
        data.create("flower12")


def _write_images(root, layout):
    for name, (mode, size) in layout.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new(mode, size, color=128 if mode == "L" else (200, 10, 10)[: len(mode)] if mode != "P" else 3).save(path)


def test_imagefolder_mixes_sizes_and_modes_and_skips_unreadable(tmp_path):
    _write_images(tmp_path, {"cat/a.png": ("RGBA", (40, 30)), "cat/b.jpg": ("L", (64, 64)),
                             "dog/c.png": ("P", (20, 50)), "dog/d.jpg": ("RGB", (33, 33))})
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"not an image")
    source = data.create("imagefolder", root=tmp_path, size=16)
    assert source.classes == ("cat", "dog") and len(source) == 4
    assert len(source.skipped) == 1 and source.skipped[0].endswith("broken.jpg")
    images = source.load(np.arange(4))
    assert images.shape == (4, 16, 16, 3) and images.dtype == np.uint8


def test_csv_dataset_and_its_errors(tmp_path):
    _write_images(tmp_path, {"x/1.png": ("RGB", (10, 10)), "x/2.png": ("RGB", (12, 10))})
    table = tmp_path / "labels.csv"
    table.write_text("path,label\nx/1.png,red\nx/2.png,blue\n")
    source = data.create("csv", root=table, size=8)
    assert source.classes == ("blue", "red") and list(source.labels) == [1, 0]
    table.write_text("x/1.png,red\nx/missing.png,blue\n")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        data.create("csv", root=table)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        data.create("imagefolder", root=tmp_path / "empty")


def test_model_input_converts_channels_by_luma_and_repeats_gray():
    rgb = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 50, 10
    gray = to_model_input(rgb, 2, 1)
    assert gray.shape == (1, 1, 2, 2)
    assert torch.allclose(gray, torch.full_like(gray, 0.299 * 100 + 0.587 * 50 + 0.114 * 10))
    repeated = to_model_input(np.full((2, 3, 3, 1), 7, dtype=np.uint8), 6, 3)
    assert repeated.shape == (2, 3, 6, 6) and torch.allclose(repeated, torch.full_like(repeated, 7.0))
    with pytest.raises(ValueError, match="uint8"):
        to_model_input(np.zeros((1, 2, 2, 3), dtype=np.float32), 2, 3)


def _image_folder_order(root):
    from torchvision.datasets import ImageFolder

    folder = ImageFolder(str(root))
    return [p for p, _ in folder.samples], folder.targets, tuple(folder.classes)


def test_class_folders_are_listed_in_torchvisions_imagefolder_order(tmp_path):
    """The pocket sets' listing (without importing torchvision) must give ImageFolder's
    samples exactly: their order is every split's and every cache key's."""
    from pedlib.data.pocket import _folder_samples

    for name in ("b", "a", "B", "a b", "c"):
        (tmp_path / name / "deep" / "deeper").mkdir(parents=True)
    image = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    for path in ("b/2.jpg", "b/10.JPG", "b/1.png", "b/notes.txt", "a/x.jpeg", "a/deep/y.webp",
                 "a/deep/deeper/z.bmp", "a/deep2.tif", "B/q.png", "a b/r.ppm", "c/s.gif", "c/t.pgm"):
        image.save(tmp_path / path, format="PNG") if path.endswith((".jpg", ".JPG", ".png")) else (tmp_path / path).write_bytes(b"x")
    (tmp_path / "file.jpg").write_bytes(b"x")  # not in a class folder
    paths, labels, classes = _folder_samples(tmp_path)
    expected_paths, expected_labels, expected_classes = _image_folder_order(tmp_path)
    assert paths == expected_paths and labels.tolist() == list(expected_labels) and classes == expected_classes
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        _folder_samples(tmp_path)


@needs_assets
def test_the_pocket_folders_are_listed_as_imagefolder_lists_them():
    from pedlib import assets
    from pedlib.data.pocket import _folder_samples

    flowers = assets.resolve("data/flowers12")
    for root in (flowers / "train", flowers / "test", assets.resolve("data/cifar10_test_jpeg")):
        paths, labels, classes = _folder_samples(root)
        expected = _image_folder_order(root)
        assert (paths, labels.tolist(), classes) == (expected[0], list(expected[1]), expected[2]), root
