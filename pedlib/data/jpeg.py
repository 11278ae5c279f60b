"""Batched JPEG decoding and resizing with torchvision, on the GPU where extraction runs there.

PIL decodes one image at a time on one core (~270 images/s for a 500x375 JPEG plus resize);
``torchvision.io.decode_jpeg(..., device="cuda")`` decodes a whole batch with nvJPEG
(thousands per second). :func:`decode_files` reproduces :func:`pedlib.data.images.decode`:
the shorter side resized to ``size`` (bilinear, antialiased), the centre ``size x size``
crop kept, RGB or grayscale. Files that are not JPEGs, or that the JPEG decoder refuses, fall
back to that PIL path one by one (counted in ``fallbacks``). The same code runs on the CPU,
which is how its agreement with the PIL path is tested (at most one grey level apart).

torchvision 0.29 deprecates its image decoders in favour of TorchCodec; they still work and
this module is the one place that would change (``torchcodec.decoders.decode_jpeg``).
"""

from __future__ import annotations

import warnings
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._source import ImageSource
from .images import decode

__all__ = ["decode_files", "iter_decoded"]

_JPEG_MAGIC = b"\xff\xd8"


def _luma(images: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) uint8 RGB -> (..., 1, H, W) uint8 with PIL's integer ITU-R 601 conversion
    ((19595 R + 38470 G + 7471 B + 2^15) >> 16), so grayscale matches ``convert("L")``; the
    JPEG decoder's own gray mode takes the file's Y channel, up to 8 levels away."""
    r, g, b = images.to(torch.int32).unbind(-3)
    return ((19595 * r + 38470 * g + 7471 * b + 32768) >> 16).to(torch.uint8).unsqueeze(-3)


def _resize_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, size, size) uint8: shorter side to ``size``, centre crop,
    with the rounding of :func:`pedlib.data.images.decode`. Each image is resampled on its
    own, so an image gives the same bytes in any batch."""
    h, w = images.shape[-2:]
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(images.float(), size=(new_h, new_w), mode="bilinear", antialias=True,
                          align_corners=False)
        images = x.round_().clamp_(0, 255).to(torch.uint8)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return images[:, :, top:top + size, left:left + size]


#: Most bytes of float32 pixels that one resize call makes (a batch of large photos is split).
_RESIZE_BYTES = 1 << 29


def _resized(decoded: Sequence[torch.Tensor | None], size: int, channels: int) -> list[torch.Tensor | None]:
    """:func:`_resize_crop` of each decoded (3, H, W) image, one call per image size (a batch
    of same-sized photos is a few kernels, not a few per image), at most
    :data:`_RESIZE_BYTES` of float pixels per call; None stays None."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(decoded):
        if image is not None:
            groups.setdefault(tuple(image.shape), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(decoded)
    for members in groups.values():
        per_call = max(1, _RESIZE_BYTES // (4 * decoded[members[0]].numel()))
        for start in range(0, len(members), per_call):
            part = members[start:start + per_call]
            images = torch.stack([decoded[i] for i in part])
            for i, image in zip(part, _resize_crop(images if channels == 3 else _luma(images), size)):
                out[i] = image
    return out


def decode_files(paths: Sequence[str], size: int, channels: int = 3, *,
                 device: str | torch.device = "cpu") -> tuple[torch.Tensor, int]:
    """Decode and resize ``paths`` on ``device``.

    Returns
    -------
    images : uint8 tensor of shape (n, size, size, channels) on ``device``
    fallbacks : int
        How many files went through the PIL path instead (not JPEG, or refused).
    """
    with warnings.catch_warnings():  # torchvision's deprecation notice (module docstring)
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg, read_file

        device = torch.device(device)
        raw = [read_file(str(path)) for path in paths]
        jpeg = [i for i, data in enumerate(raw) if bytes(data[:2].tolist()) == _JPEG_MAGIC]
        out: list[torch.Tensor | None] = [None] * len(paths)
        if jpeg:
            try:
                decoded = decode_jpeg([raw[i] for i in jpeg], mode=ImageReadMode.RGB, device=device)
            except RuntimeError:  # one bad file fails the batch: decode one by one to find it
                decoded = []
                for i in jpeg:
                    try:
                        decoded.append(decode_jpeg(raw[i], mode=ImageReadMode.RGB, device=device))
                    except RuntimeError:
                        decoded.append(None)
            for i, image in zip(jpeg, _resized(decoded, size, channels)):
                out[i] = image
    fallbacks = 0
    for i, image in enumerate(out):
        if image is None:
            fallbacks += 1
            array = decode(paths[i], size, channels)  # raises for an unreadable file
            out[i] = torch.from_numpy(array.copy()).permute(2, 0, 1).to(device)
    return torch.stack(out).permute(0, 2, 3, 1).contiguous(), fallbacks


def iter_decoded(source: ImageSource, batches: Sequence[np.ndarray], *,
                 device: str | torch.device = "cuda") -> Iterator[torch.Tensor]:
    """Yield each batch of ``source`` decoded by :func:`decode_files` on ``device``, in order.

    Batches are decoded in the caller's thread, one at a time: decoding ahead on a thread of its
    own, on a CUDA stream of its own, measured no faster on an H200 (docs/speed.md: nvJPEG's
    copies of the file bytes wait for the GPU), so it is not done.
    """
    files = source.files
    if files is None:
        raise ValueError(f"{source.name}: its images are not files; use pedlib.data.loader.iter_batches")
    size, channels = source.loader.size, source.channels
    device = torch.device(device)
    for batch in batches:
        yield decode_files([files[i] for i in batch], size, channels, device=device)[0]
