"""Decoding image files and turning uint8 image batches into a model's input tensor."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

__all__ = ["decode", "decode_many", "decode_indexed", "FileLoader", "to_model_input"]

log = logging.getLogger(__name__)

# ITU-R 601-2 luma, the weights PIL uses for mode "L".
_LUMA = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 3, 1, 1)


def decode(path: str | Path, size: int | None, channels: int = 3) -> np.ndarray:
    """Read one image file as uint8 (H, W, channels).

    Any mode (palette, RGBA, 16-bit, grayscale) is converted to RGB or L. With ``size``, the
    shorter side is resized to ``size`` and the centre ``size x size`` crop kept.
    """
    with Image.open(path) as image:
        image = image.convert("RGB" if channels == 3 else "L")
        if size is not None:
            w, h = image.size
            scale = size / min(w, h)
            image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                                 Image.Resampling.BILINEAR, reducing_gap=None)
            w, h = image.size
            left, top = (w - size) // 2, (h - size) // 2
            image = image.crop((left, top, left + size, top + size))
        array = np.asarray(image, dtype=np.uint8)
    return array.reshape(array.shape[0], array.shape[1], channels)


def decode_many(paths: Sequence[str | Path], size: int, channels: int = 3, *,
                progress: bool = False, desc: str = "decode") -> tuple[np.ndarray, np.ndarray]:
    """Decode files into one uint8 array (n, size, size, channels); unreadable files are skipped.

    Returns
    -------
    images : ndarray of shape (n_readable, size, size, channels)
    readable : ndarray of bool, shape (len(paths),)
        False where a file could not be read (logged with its path).
    """
    from ..progress import progress as counter

    out = np.empty((len(paths), size, size, channels), dtype=np.uint8)
    readable = np.ones(len(paths), dtype=bool)
    for i, path in enumerate(counter(paths, desc=desc, unit="img", enabled=progress, leave=False)):
        try:
            out[i] = decode(path, size, channels)
        except (UnidentifiedImageError, OSError, ValueError) as error:
            log.warning("skipping unreadable image %s: %s", path, error)
            readable[i] = False
    return out[readable], readable


def decode_indexed(paths: Sequence[str], size: int, channels: int, name: str,
                   indices: np.ndarray, *, progress: bool = False) -> np.ndarray:
    """Decode ``paths[indices]`` (a dataset loader); an unreadable file here is an error, since
    datasets check or checksum their files when they are built. Silent by default: it runs
    inside DataLoader workers and inside stages that report their own progress."""
    images, readable = decode_many([paths[i] for i in indices], size, channels,
                                   progress=progress, desc=f"decode {name}")
    if not readable.all():
        bad = [paths[i] for i, ok in zip(indices, readable) if not ok]
        raise OSError(f"{name}: {len(bad)} image(s) could not be read, e.g. {bad[0]}")
    return images


class FileLoader:
    """The loader of an :class:`~pedlib.data.ImageSource` whose images are files: decodes
    ``paths[indices]`` with :func:`decode` (shorter side to ``size``, centre crop). It carries
    its paths and size, so GPU decoding (:mod:`pedlib.data.jpeg`) can read the same files."""

    def __init__(self, paths: Sequence[str], size: int, channels: int, name: str):
        self.paths, self.size, self.channels, self.name = tuple(map(str, paths)), size, channels, name

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        return decode_indexed(self.paths, self.size, self.channels, self.name, indices)


def to_model_input(images: np.ndarray, size: int, channels: int,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 images (N, H, W, C) -> float32 tensor (N, channels, size, size) in 0..255.

    Grayscale becomes 3-channel by repetition; colour becomes grayscale by ITU-R 601 luma.
    Resizing is bilinear with antialiasing (a no-op when the size already matches). The
    uint8 batch (a numpy array, or a tensor already on a device, as GPU decoding gives) is
    moved to ``device`` first, so the conversion runs there.
    """
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.dtype != torch.uint8 or images.shape[3] not in (1, 3):
            raise ValueError(f"images must be uint8 of shape (N, H, W, 1 or 3), got {images.dtype} "
                             f"{tuple(images.shape)}")
        tensor = images.to(device, non_blocking=True)
    else:
        if images.ndim != 4 or images.dtype != np.uint8 or images.shape[3] not in (1, 3):
            raise ValueError(f"images must be uint8 of shape (N, H, W, 1 or 3), got {images.dtype} "
                             f"{images.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    x = tensor.permute(0, 3, 1, 2).float()
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 3 and channels == 1:
        x = (x * _LUMA.to(x.device)).sum(dim=1, keepdim=True)
    if x.shape[2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False).clamp_(0, 255)
    return x.contiguous()
