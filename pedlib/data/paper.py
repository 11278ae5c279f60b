"""The paper studies' 11 target datasets (and ImageNet val for PED's reference), read from
their original on-disk layouts with torchvision's dataset classes where they exist.

Each factory takes ``root`` (default ``$PEDLIB_DATA/<name>``, else
``~/.cache/pedlib/data/<name>``), the folder torchvision's class expects (``download=True``
is deliberately not used: it would hide a missing dataset behind a multi-GB download; the
README lists each dataset's source). Train is ``trainval`` where the dataset has one.

| name | source layout under root | split | reported metric |
|---|---|---|---|
| aircraft | fgvc-aircraft-2013b/ (torchvision FGVCAircraft, variants) | train+val / test | mean per-class accuracy |
| caltech101 | 101_ObjectCategories/ + the ssl-transfer split | 2,416 / 6,728 (params/published) | mean per-class accuracy |
| cars | stanford_cars/ (torchvision StanfordCars; manual download) | train / test | accuracy |
| cifar10, cifar100 | cifar-10-batches-py/, cifar-100-python/ (the python pickles) | train / test | accuracy |
| dtd | dtd/ (torchvision DTD, partition 1) | train+val / test | accuracy |
| flowers | flowers-102/ (jpg/, imagelabels.mat, setid.mat) | train+val / test | mean per-class accuracy |
| food | food-101/ (torchvision Food101) | train / test | accuracy |
| pets | oxford-iiit-pet/ (torchvision OxfordIIITPet) | trainval / test | mean per-class accuracy |
| sun397 | SUN397/ (ClassName.txt, Partitions/Training_01.txt, Testing_01.txt) | partition 1 | accuracy |
| voc2007 | VOCdevkit/VOC2007 (torchvision VOCDetection) | train+val / test | 11-point mAP |

Where a dataset ships a validation split (aircraft, dtd, flowers, voc2007) its images are
marked "val": they are part of train for scoring, and fine-tuning selects its settings on
them (elsewhere on a seeded 20% of train). Each source's ``metric`` says how fine-tuning is
scored on it (``pedlib.groundtruth.accuracy``).

VOC2007 is multi-label; transferability metrics need one label per image, so an image's
label for scoring is the class of its largest (by box area) non-difficult object, else its
largest object (the reference code's choice is not documented; this one is stated here).
Fine-tuning uses all labels (``multilabels``: present, absent, or difficult only).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import numpy as np

from ..safe_files import load_pickle
from ._source import ImageSource, register
from .images import FileLoader

_LOADER_VERSION = "2"
_PUBLISHED = Path(__file__).resolve().parents[2] / "params" / "published"


def default_root(name: str) -> Path:
    base = os.environ.get("PEDLIB_DATA")
    return Path(base) / name if base else Path.home() / ".cache" / "pedlib" / "data" / name


def _missing(name: str, root: Path, what: str, error: Exception | None = None) -> FileNotFoundError:
    detail = str(error or "").split(" You can use download=True")[0]  # torchvision's hint: pedlib never downloads
    return FileNotFoundError(f"dataset {name!r} not found under {root} (expected {what}"
                             + (f"; {detail}" if detail else "") + "); pedlib does not download "
                             "datasets: put it there as the README's 'Paper studies' section describes, "
                             "or set PEDLIB_DATA to the folder that holds it")


def _source(name, paths, labels, classes, split, size, root, metric="accuracy",
            multilabels=None) -> ImageSource:
    labels = np.asarray(labels, dtype=np.int64)
    return ImageSource(name, labels, tuple(map(str, classes)),
                       FileLoader([str(p) for p in paths], size, 3, name), 3,
                       f"{name}|{Path(root).resolve()}|n={len(paths)}|size={size}|loader={_LOADER_VERSION}",
                       np.asarray(split), multilabels=multilabels, metric=metric)


def _two_splits(name, root, size, make, parts, what, metric="accuracy"):
    """Concatenate torchvision split objects; ``parts`` is [(split name, role), ...] with role
    train, val or test."""
    paths, labels, split, classes = [], [], [], None
    for part, role in parts:
        try:
            files, targets, classes = make(part)
        except (RuntimeError, FileNotFoundError) as error:
            raise _missing(name, root, what, error) from None
        paths += list(files)
        labels += list(targets)
        split += [role] * len(files)
    return _source(name, paths, labels, classes, split, size, root, metric)


@register("aircraft")
def aircraft(*, root=None, size: int = 224, **_):
    from torchvision.datasets import FGVCAircraft

    root = Path(root or default_root("aircraft"))

    def make(part):
        d = FGVCAircraft(str(root), split=part, annotation_level="variant", download=False)
        return d._image_files, d._labels, d.classes

    return _two_splits("aircraft", root, size, make, [("train", "train"), ("val", "val"), ("test", "test")],
                       "fgvc-aircraft-2013b/", "mean_per_class")


@register("dtd")
def dtd(*, root=None, size: int = 224, partition: int = 1, **_):
    from torchvision.datasets import DTD

    root = Path(root or default_root("dtd"))

    def make(part):
        d = DTD(str(root), split=part, partition=partition, download=False)
        return d._image_files, d._labels, d.classes

    return _two_splits("dtd", root, size, make, [("train", "train"), ("val", "val"), ("test", "test")],
                       "dtd/images, dtd/labels")


@register("food")
def food(*, root=None, size: int = 224, **_):
    from torchvision.datasets import Food101

    root = Path(root or default_root("food"))

    def make(part):
        d = Food101(str(root), split=part, download=False)
        return d._image_files, d._labels, d.classes

    return _two_splits("food", root, size, make, [("train", "train"), ("test", "test")],
                       "food-101/meta, food-101/images")


@register("pets")
def pets(*, root=None, size: int = 224, **_):
    from torchvision.datasets import OxfordIIITPet

    root = Path(root or default_root("pets"))

    def make(part):
        d = OxfordIIITPet(str(root), split=part, download=False)
        return d._images, d._labels, d.classes

    return _two_splits("pets", root, size, make, [("trainval", "train"), ("test", "test")],
                       "oxford-iiit-pet/", "mean_per_class")


@register("cars")
def cars(*, root=None, size: int = 224, **_):
    from torchvision.datasets import StanfordCars

    root = Path(root or default_root("cars"))

    def make(part):
        d = StanfordCars(str(root), split=part, download=False)
        return [p for p, _ in d._samples], [t for _, t in d._samples], d.classes

    return _two_splits("cars", root, size, make, [("train", "train"), ("test", "test")],
                       "stanford_cars/devkit, cars_train, cars_test, cars_test_annos_withlabels.mat")


def _cifar(name: str, folder: str, files: dict, label_key: bytes, meta: tuple, root, size: int):
    root = Path(root or default_root(name))
    base = root / folder
    if not base.is_dir():
        raise _missing(name, root, f"{folder}/ with the python pickles")
    arrays, labels, split = [], [], []
    for role, names in files.items():
        for file in names:
            batch = load_pickle(base / file, encoding="bytes")
            arrays.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels += list(batch[label_key])
            split += [role] * len(batch[label_key])
    classes = [c.decode() for c in load_pickle(base / meta[0], encoding="bytes")[meta[1]]]
    images = np.concatenate(arrays)
    return ImageSource(name, np.asarray(labels, dtype=np.int64), tuple(classes),
                       partial(_resize_array, images, size), 3,
                       f"{name}|{root.resolve()}|n={len(labels)}|size={size}|loader={_LOADER_VERSION}",
                       np.asarray(split))


def _resize_array(images: np.ndarray, size: int, indices: np.ndarray) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    chosen = images[indices]
    if size == chosen.shape[1]:
        return chosen
    x = torch.from_numpy(chosen).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@register("cifar10_python")
def cifar10_python(*, root=None, size: int = 224, **_):
    """CIFAR-10 from its python pickles (50,000 train / 10,000 test)."""
    return _cifar("cifar10", "cifar-10-batches-py",
                  {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
                  b"labels", ("batches.meta", b"label_names"), root, size)


@register("cifar100_python")
def cifar100_python(*, root=None, size: int = 224, **_):
    """CIFAR-100 (fine labels) from its python pickles."""
    return _cifar("cifar100", "cifar-100-python", {"train": ["train"], "test": ["test"]},
                  b"fine_labels", ("meta", b"fine_label_names"), root, size)


@register("flowers")
def flowers(*, root=None, size: int = 224, **_):
    """Oxford Flowers-102: train + val (20 per class) / test, labels 1..102 in imagelabels.mat."""
    from scipy.io import loadmat

    root = Path(root or default_root("flowers"))
    base = root / "flowers-102"
    try:
        labels = loadmat(base / "imagelabels.mat", squeeze_me=True)["labels"].astype(np.int64) - 1
        ids = loadmat(base / "setid.mat", squeeze_me=True)
    except (OSError, FileNotFoundError) as error:
        raise _missing("flowers", root, "flowers-102/jpg, imagelabels.mat, setid.mat", error) from None
    paths, codes, split = [], [], []
    for key, role in (("trnid", "train"), ("valid", "val"), ("tstid", "test")):
        for image_id in np.atleast_1d(ids[key]):
            paths.append(base / "jpg" / f"image_{int(image_id):05d}.jpg")
            codes.append(labels[int(image_id) - 1])
            split.append(role)
    return _source("flowers", paths, codes, [str(c) for c in range(int(labels.max()) + 1)], split, size,
                   root, "mean_per_class")


@register("caltech101")
def caltech101(*, root=None, size: int = 224, split_dir=None, **_):
    """Caltech-101 with the ssl-transfer split (BACKGROUND_Google is class 0)."""
    root = Path(root or default_root("caltech101"))
    split_dir = Path(split_dir) if split_dir else _PUBLISHED / "caltech101_split"
    images = root / "101_ObjectCategories"
    if not images.is_dir():
        raise _missing("caltech101", root, "101_ObjectCategories/<class>/<image>.jpg")
    paths, codes, split, names = [], [], [], {}
    for role in ("train", "test"):
        listing = split_dir / f"{role}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"caltech101 split file {listing} is missing")
        for line in listing.read_text().split("\n"):
            if line.strip():
                relative, label = line.rsplit(" ", 1)
                paths.append(images / relative)
                codes.append(int(label))
                names.setdefault(int(label), relative.split("/")[0])
                split.append(role)
    classes = [names.get(i, str(i)) for i in range(max(names) + 1)]
    return _source("caltech101", paths, codes, classes, split, size, root, "mean_per_class")


@register("sun397")
def sun397(*, root=None, size: int = 224, partition: int = 1, **_):
    """SUN397 with its official partition (Partitions/Training_0k.txt, Testing_0k.txt)."""
    root = Path(root or default_root("sun397"))
    base = root / "SUN397"
    names_file = base / "ClassName.txt"
    parts = {role: base / "Partitions" / f"{kind}_{partition:02d}.txt"
             for role, kind in (("train", "Training"), ("test", "Testing"))}
    if not names_file.is_file() or not all(p.is_file() for p in parts.values()):
        raise _missing("sun397", root, "SUN397/ClassName.txt and SUN397/Partitions/")
    classes = [line.strip() for line in names_file.read_text().split("\n") if line.strip()]
    index = {c: i for i, c in enumerate(classes)}
    paths, codes, split = [], [], []
    for role, listing in parts.items():
        for line in listing.read_text().split("\n"):
            if line.strip():
                relative = line.strip()
                paths.append(base / relative.lstrip("/"))
                codes.append(index[relative.rsplit("/", 1)[0]])
                split.append(role)
    return _source("sun397", paths, codes, [c.strip("/") for c in classes], split, size, root)


VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")


def _voc_objects(annotation: dict) -> list[dict]:
    objects = annotation["annotation"].get("object", [])
    return objects if isinstance(objects, list) else [objects]


def voc_label(annotation: dict) -> int:
    """The class of the largest non-difficult object (else the largest object)."""
    objects = _voc_objects(annotation)

    def area(obj):
        box = obj["bndbox"]
        return (float(box["xmax"]) - float(box["xmin"])) * (float(box["ymax"]) - float(box["ymin"]))

    easy = [o for o in objects if str(o.get("difficult", "0")) != "1"] or objects
    return VOC_CLASSES.index(max(easy, key=area)["name"])


def voc_multilabel(annotation: dict) -> np.ndarray:
    """(20,) int8: 1 where a non-difficult object of the class is present, -1 where the class
    is present only as difficult objects (ignored by VOC's evaluation), else 0."""
    target = np.zeros(len(VOC_CLASSES), dtype=np.int8)
    for obj in _voc_objects(annotation):
        code = VOC_CLASSES.index(obj["name"])
        if str(obj.get("difficult", "0")) != "1":
            target[code] = 1
        elif target[code] == 0:
            target[code] = -1
    return target


@register("voc2007")
def voc2007(*, root=None, size: int = 224, **_):
    """PASCAL VOC 2007 classification: train + val / test, one label per image for scoring and
    all labels for fine-tuning (see the module docstring)."""
    import xml.etree.ElementTree as ElementTree

    from torchvision.datasets import VOCDetection

    root = Path(root or default_root("voc2007"))
    paths, labels, targets, split = [], [], [], []
    for part in ("train", "val", "test"):
        try:
            d = VOCDetection(str(root), year="2007", image_set=part, download=False)
        except (RuntimeError, FileNotFoundError) as error:
            raise _missing("voc2007", root, "VOCdevkit/VOC2007/", error) from None
        for image, annotation in zip(d.images, d.annotations):
            parsed = d.parse_voc_xml(ElementTree.parse(annotation).getroot())
            paths.append(image)
            labels.append(voc_label(parsed))
            targets.append(voc_multilabel(parsed))
            split.append(part)
    return _source("voc2007", paths, labels, VOC_CLASSES, split, size, root, "map11",
                   np.stack(targets))


@register("imagenet")
def imagenet(*, root=None, size: int = 224, **_):
    """ILSVRC-2012 val as an ImageFolder (class per sub-folder), supplied by the user: PED's
    reference sample in the paper studies."""
    from .folders import imagefolder

    root = Path(root or default_root("imagenet"))
    if not root.is_dir():
        raise _missing("imagenet", root, "an ImageFolder of ILSVRC-2012 val")
    return imagefolder(root=root, size=size)
