"""The :class:`ImageSource` contract, the dataset registry and seeded stratified splits."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .._registry import Registry

__all__ = ["ImageSource", "Split", "register", "create", "available", "split", "cap_per_class"]


@dataclass(frozen=True)
class ImageSource:
    """A labelled pool of images whose pixels are decoded only when asked for.

    Attributes
    ----------
    name : str
    labels : ndarray of int, shape (n_images,)
        Codes 0..C-1 into ``classes``.
    classes : tuple of str
    loader : callable ``(indices) -> uint8 ndarray (n, H, W, channels)``
    channels : int
        1 (grayscale) or 3 (RGB), what ``load`` returns.
    content_id : str
        Identifies the pixels and labels (asset checksums + loader version); part of every
        cache key built on this source.
    predefined : ndarray of str, shape (n_images,), optional
        ``"train"``/``"val"``/``"test"`` where the dataset ships its own split ("val" is part
        of train for scoring and the linear probe; fine-tuning selects its settings on it).
    skipped : tuple of str
        Files found but left out because they could not be read (user folders).
    multilabels : ndarray of int8, shape (n_images, n_classes), optional
        Multi-label targets (1 present, 0 absent, -1 difficult only) where the dataset is
        multi-label (voc2007); ``labels`` then holds one representative class per image.
    metric : str
        How fine-tuning is scored on it (``pedlib.groundtruth.accuracy``): "accuracy",
        "mean_per_class" or "map11".
    """

    name: str
    labels: np.ndarray
    classes: tuple[str, ...]
    loader: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    channels: int
    content_id: str
    predefined: np.ndarray | None = field(default=None, repr=False)
    skipped: tuple[str, ...] = field(default=(), repr=False)
    multilabels: np.ndarray | None = field(default=None, repr=False)
    metric: str = "accuracy"

    def __post_init__(self):
        if self.labels.ndim != 1 or len(self.labels) == 0:
            raise ValueError(f"dataset {self.name!r} has no images")
        if self.predefined is not None and self.predefined.shape != self.labels.shape:
            raise ValueError("predefined split must have one entry per image")
        if self.multilabels is not None and self.multilabels.shape != (len(self.labels), len(self.classes)):
            raise ValueError("multilabels must have shape (n_images, n_classes)")

    @property
    def val(self) -> np.ndarray | None:
        """Indices of the dataset's own validation images, or None where it has none."""
        if self.predefined is None or not (self.predefined == "val").any():
            return None
        return np.flatnonzero(self.predefined == "val")

    @property
    def files(self) -> tuple[str, ...] | None:
        """The image files, where the images are files read by a :class:`FileLoader`."""
        from .images import FileLoader

        return self.loader.paths if isinstance(self.loader, FileLoader) else None

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, indices) -> np.ndarray:
        """Decode the images at ``indices`` (uint8, (n, H, W, channels))."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"indices out of range for {self.name!r} ({len(self)} images)")
        return self.loader(indices)


@dataclass(frozen=True)
class Split:
    """Sorted image indices of a train and a test split."""

    train: np.ndarray
    test: np.ndarray
    dropped: tuple[str, ...] = ()  # classes left out (one image, and no test split to need it)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in ("train", "test"):
            raise KeyError(f"split must be 'train' or 'test', got {name!r}")
        return getattr(self, name)


_DATASETS: Registry[Callable[..., ImageSource]] = Registry("dataset")


def register(name: str):
    """Decorator: register a factory ``(**options) -> ImageSource`` under ``name``."""

    def decorate(factory):
        _DATASETS.add(name, factory)
        return factory

    return decorate


def create(name: str, **options) -> ImageSource:
    """Build the dataset ``name`` (options go to its factory, e.g. ``root=`` for folders)."""
    return _DATASETS.get(name)(**options)


def available() -> list[str]:
    return _DATASETS.names()


def cap_per_class(indices: np.ndarray, labels: np.ndarray, cap: int | None,
                   rng: np.random.Generator) -> np.ndarray:
    """Keep at most ``cap`` randomly chosen indices of each class (all when ``cap`` is None)."""
    if cap is None:
        return np.sort(indices)
    shuffled = indices[rng.permutation(len(indices))]
    order = np.argsort(labels[shuffled], kind="stable")
    grouped = shuffled[order]
    grouped_labels = labels[grouped]
    starts = np.searchsorted(grouped_labels, grouped_labels, side="left")
    rank = np.arange(len(grouped)) - starts
    return np.sort(grouped[rank < cap])


def split(source: ImageSource, *, seed: int, test_fraction: float = 0.5,
          train_per_class: int | None = None, test_per_class: int | None = None) -> Split:
    """Seeded stratified train/test split, then at most ``*_per_class`` images per class.

    A dataset with a predefined split keeps it (``test_fraction`` is then unused); its
    validation images are part of train. ``test_fraction=0``: no test split, every image is in
    train (a target that is only scored, as ``pedlib rank``'s); a class with a single image has
    no spread to measure and is left out, with a warning (``Split.dropped``).

    Raises
    ------
    ValueError
        A class ends up with no test image or fewer than 2 train images (PED and most metrics
        need a spread per class), or the options are out of range.
    """
    from sklearn.model_selection import train_test_split

    for name, cap in (("train_per_class", train_per_class), ("test_per_class", test_per_class)):
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ValueError(f"{name} must be a positive integer or None, got {cap!r}")
    rng = np.random.default_rng(seed)
    labels = source.labels
    if source.predefined is None and test_fraction == 0:
        return _scored_only(source, train_per_class, rng)
    if source.predefined is not None:
        train = np.flatnonzero(np.isin(source.predefined, ("train", "val")))
        test = np.flatnonzero(source.predefined == "test")
    else:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        counts = np.bincount(labels, minlength=len(source.classes))
        if counts.min() < 2:
            empty = [source.classes[c] for c in np.flatnonzero(counts < 2)]
            raise ValueError(f"dataset {source.name!r}: classes {empty} have fewer than 2 images; "
                             "a stratified split needs at least 2 per class")
        train, test = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                       stratify=labels, random_state=seed)
    train = cap_per_class(train, labels, train_per_class, rng)
    test = cap_per_class(test, labels, test_per_class, rng)
    n_classes = len(source.classes)
    for part, indices, minimum in (("train", train, 2), ("test", test, 1)):
        counts = np.bincount(labels[indices], minlength=n_classes)
        if counts.min() < minimum:
            short = [source.classes[c] for c in np.flatnonzero(counts < minimum)]
            raise ValueError(f"dataset {source.name!r}: after splitting, classes {short} have fewer "
                             f"than {minimum} {part} image(s); use more images per class or "
                             "drop those classes")
    return Split(train=train, test=test)


def _scored_only(source: ImageSource, cap: int | None, rng: np.random.Generator) -> Split:
    """Every image in train (at most ``cap`` per class) but those of one-image classes."""
    counts = np.bincount(source.labels, minlength=len(source.classes))
    dropped = tuple(source.classes[c] for c in np.flatnonzero(counts < 2))
    if dropped:
        warnings.warn(f"dropping {len(dropped)} class(es) with a single image: {list(dropped[:10])}",
                      UserWarning, stacklevel=3)
    if int((counts >= 2).sum()) < 2:
        raise ValueError(f"{source.name}: scoring needs at least 2 classes with 2 or more images "
                         f"each; found {int((counts >= 2).sum())}")
    keep = np.flatnonzero(counts[source.labels] >= 2)
    return Split(train=cap_per_class(keep, source.labels, cap, rng), test=np.zeros(0, dtype=np.int64),
                 dropped=dropped)
