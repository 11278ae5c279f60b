"""A user's own labelled images: an ImageFolder (class per sub-folder) or a CSV of path,label."""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from ._source import ImageSource, register
from .images import FileLoader

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif"}


def _readable(path: Path) -> bool:
    """Whether the file decodes to the end: a header check (``verify``) passes a truncated
    JPEG that fails later, inside a DataLoader worker or the GPU decoder. JPEGs decode at
    reduced scale (``draft``), which still reads every scan."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (32, 32))
            image.load()
        return True
    except Exception:  # PIL raises many types for broken files
        return False


def _fingerprint(paths: list[Path], labels: list[str]) -> str:
    digest = hashlib.sha256()
    for path, label in zip(paths, labels):
        stat = path.stat()
        digest.update(f"{path}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _build(name: str, paths: list[Path], labels: list[str], size: int) -> ImageSource:
    """Check readability, encode labels, and return a lazily decoding source."""
    if not paths:
        raise ValueError(f"{name}: no images found")
    ok = np.array([_readable(p) for p in paths], dtype=bool)
    skipped = tuple(str(p) for p, good in zip(paths, ok) if not good)
    if skipped:
        log.warning("%s: skipping %d unreadable image(s), e.g. %s", name, len(skipped), skipped[0])
    paths = [p for p, good in zip(paths, ok) if good]
    labels = [label for label, good in zip(labels, ok) if good]
    if not paths:
        raise ValueError(f"{name}: none of the images could be read ({len(skipped)} skipped)")
    classes, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    return ImageSource(name, codes.astype(np.int64), tuple(classes.tolist()),
                       FileLoader([str(p) for p in paths], size, 3, name), 3,
                       f"{name}|{_fingerprint(paths, labels)}|size={size}", skipped=skipped)


@register("imagefolder")
def imagefolder(*, root, size: int = 224, **_ignored) -> ImageSource:
    """Images under ``root/<class>/...`` (any depth); mixed sizes and modes become RGB ``size``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{root}: no class sub-folders (expected {root}/<class>/<image>)")
    paths, labels = [], []
    for folder in class_dirs:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [folder.name] * len(files)
    return _build(f"imagefolder:{root}", paths, labels, size)


@register("csv")
def csv_images(*, root, size: int = 224, **_ignored) -> ImageSource:
    """A CSV with columns ``path,label`` (header optional); relative paths are from its folder."""
    table = Path(root)
    if not table.is_file():
        raise FileNotFoundError(f"CSV file {table} does not exist")
    with table.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    bad = [i for i, row in enumerate(rows) if len(row) < 2 or not row[1].strip()]
    if bad:
        raise ValueError(f"{table}: rows {bad[:5]} do not have the form path,label")
    paths = [(table.parent / row[0].strip()) for row in rows]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{table}: {len(missing)} listed image(s) do not exist, e.g. {missing[0]}")
    return _build(f"csv:{table}", paths, [row[1].strip() for row in rows], size)
