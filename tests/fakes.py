"""Tiny fakes of the paper datasets in their real on-disk layouts (2 classes, a few images)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image


def _jpg(path: Path, value: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20 + value % 7, 18), (value * 40 % 256, 80, 160)).save(path)


def aircraft(root: Path):
    data = root / "fgvc-aircraft-2013b" / "data"
    (data / "variants.txt").parent.mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("707-320\nA300B4\n")
    lines = {"trainval": ["1000001 707-320", "1000002 A300B4", "1000003 707-320", "1000004 A300B4"],
             "test": ["1000005 707-320", "1000006 A300B4"]}
    for part, rows in lines.items():
        (data / f"images_variant_{part}.txt").write_text("\n".join(rows) + "\n")
        for i, row in enumerate(rows):
            _jpg(data / "images" / f"{row.split()[0]}.jpg", i)
    return {"train": 4, "test": 2, "classes": 2}


def dtd(root: Path):
    base = root / "dtd" / "dtd"
    files = {"train": ["banded/a.jpg", "dotted/b.jpg"], "val": ["banded/c.jpg", "dotted/d.jpg"],
             "test": ["banded/e.jpg", "dotted/f.jpg"]}
    (base / "labels").mkdir(parents=True)
    for part, names in files.items():
        (base / "labels" / f"{part}1.txt").write_text("\n".join(names) + "\n")
        for i, name in enumerate(names):
            _jpg(base / "images" / name, i)
    return {"train": 4, "test": 2, "classes": 2}


def food(root: Path):
    base = root / "food-101"
    meta = {"train": {"apple_pie": ["apple_pie/1", "apple_pie/2"], "sushi": ["sushi/3", "sushi/4"]},
            "test": {"apple_pie": ["apple_pie/5"], "sushi": ["sushi/6"]}}
    (base / "meta").mkdir(parents=True)
    for part, content in meta.items():
        (base / "meta" / f"{part}.json").write_text(json.dumps(content))
        for i, name in enumerate(sum(content.values(), [])):
            _jpg(base / "images" / f"{name}.jpg", i)
    return {"train": 4, "test": 2, "classes": 2}


def pets(root: Path):
    base = root / "oxford-iiit-pet"
    rows = {"trainval": ["Abyssinian_1 1 1 1", "beagle_2 2 2 1", "Abyssinian_3 1 1 1", "beagle_4 2 2 1"],
            "test": ["Abyssinian_5 1 1 1", "beagle_6 2 2 1"]}
    (base / "annotations").mkdir(parents=True)
    for part, lines in rows.items():
        (base / "annotations" / f"{part}.txt").write_text("\n".join(lines) + "\n")
        for i, line in enumerate(lines):
            _jpg(base / "images" / f"{line.split()[0]}.jpg", i)
    return {"train": 4, "test": 2, "classes": 2}


def cars(root: Path):
    from scipy.io import savemat

    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(["AM General Hummer", "Acura RL"], dtype=object)})
    for part, folder, annos, n in (("train", "cars_train", base / "devkit" / "cars_train_annos.mat", 4),
                                   ("test", "cars_test", base / "cars_test_annos_withlabels.mat", 2)):
        records = np.zeros(n, dtype=[("fname", object), ("class", np.uint8)])
        for i in range(n):
            records[i] = (f"{i:05d}.jpg", 1 + i % 2)
            _jpg(base / folder / f"{i:05d}.jpg", i)
        savemat(annos, {"annotations": records})
    return {"train": 4, "test": 2, "classes": 2}


def cifar10(root: Path):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batch = {b"data": rng.integers(0, 256, size=(2, 3072), dtype=np.uint8), b"labels": [0, 1]}
        (base / name).write_bytes(pickle.dumps(batch))
    (base / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane", b"automobile"]}))
    return {"train": 10, "test": 2, "classes": 2}


def cifar100(root: Path):
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", 4), ("test", 2)):
        batch = {b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), b"fine_labels": [0, 1] * (n // 2)}
        (base / name).write_bytes(pickle.dumps(batch))
    (base / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"apple", b"aquarium_fish"]}))
    return {"train": 4, "test": 2, "classes": 2}


def flowers(root: Path):
    from scipy.io import savemat

    base = root / "flowers-102"
    for i in range(1, 7):
        _jpg(base / "jpg" / f"image_{i:05d}.jpg", i)
    savemat(base / "imagelabels.mat", {"labels": np.array([1, 2, 1, 2, 1, 2])})
    savemat(base / "setid.mat", {"trnid": np.array([1, 2]), "valid": np.array([3, 4]), "tstid": np.array([5, 6])})
    return {"train": 4, "test": 2, "classes": 2}


def caltech101(root: Path, split_dir: Path):
    for name in ("BACKGROUND_Google/image_0001.jpg", "BACKGROUND_Google/image_0002.jpg",
                 "accordion/image_0001.jpg", "accordion/image_0002.jpg", "accordion/image_0003.jpg"):
        _jpg(root / "101_ObjectCategories" / name, len(name))
    split_dir.mkdir(parents=True)
    (split_dir / "train.txt").write_text("BACKGROUND_Google/image_0001.jpg 0\naccordion/image_0001.jpg 1\n"
                                         "accordion/image_0001.jpg 1\n")  # drawn with replacement
    (split_dir / "test.txt").write_text("BACKGROUND_Google/image_0002.jpg 0\naccordion/image_0002.jpg 1\n"
                                        "accordion/image_0003.jpg 1\n")
    return {"train": 3, "test": 3, "classes": 2}


def sun397(root: Path):
    base = root / "SUN397"
    (base / "Partitions").mkdir(parents=True)
    (base / "ClassName.txt").write_text("/a/abbey\n/b/bakery/shop\n")
    train = ["/a/abbey/sun_1.jpg", "/b/bakery/shop/sun_2.jpg"]
    test = ["/a/abbey/sun_3.jpg", "/b/bakery/shop/sun_4.jpg"]
    (base / "Partitions" / "Training_01.txt").write_text("\n".join(train) + "\n")
    (base / "Partitions" / "Testing_01.txt").write_text("\n".join(test) + "\n")
    for i, name in enumerate(train + test):
        _jpg(base / name.lstrip("/"), i)
    return {"train": 2, "test": 2, "classes": 2}


def voc2007(root: Path):
    base = root / "VOCdevkit" / "VOC2007"
    (base / "ImageSets" / "Main").mkdir(parents=True)
    (base / "Annotations").mkdir(parents=True)
    ids = {"trainval": ["000001", "000002"], "test": ["000003", "000004"]}
    objects = {"000001": [("dog", 0, 10, 10), ("person", 0, 50, 50)],   # person is largest
               "000002": [("cat", 0, 30, 30)],
               "000003": [("person", 1, 90, 90), ("dog", 0, 20, 20)],   # difficult person skipped
               "000004": [("cat", 0, 5, 5)]}
    for part, names in ids.items():
        (base / "ImageSets" / "Main" / f"{part}.txt").write_text("\n".join(names) + "\n")
    for i, (name, objs) in enumerate(objects.items()):
        _jpg(base / "JPEGImages" / f"{name}.jpg", i)
        xml = "".join(f"<object><name>{c}</name><difficult>{d}</difficult><bndbox><xmin>0</xmin><ymin>0</ymin>"
                      f"<xmax>{w}</xmax><ymax>{h}</ymax></bndbox></object>" for c, d, w, h in objs)
        (base / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename>{xml}</annotation>")
    return {"train": 2, "test": 2, "classes": 20, "labels": [14, 7, 11, 7]}
