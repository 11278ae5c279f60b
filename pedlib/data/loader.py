"""Streaming decoded batches of an :class:`ImageSource`, optionally in DataLoader workers.

Paper datasets do not fit in memory decoded (Food-101's train split is 11 GB at 224 px), so
feature extraction and fine-tuning read them batch by batch. With ``workers > 0`` a
``torch.utils.data.DataLoader`` decodes the next batches in worker processes while the model
runs; the batches come back in order, so results do not depend on the number of workers.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch

from ._source import ImageSource

__all__ = ["iter_batches", "chunk", "decoded_batches"]


class _Batches(torch.utils.data.Dataset):
    def __init__(self, source: ImageSource, batches: Sequence[np.ndarray]):
        self.source = source
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.source.load(self.batches[i]))


def chunk(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """``indices`` in consecutive batches of at most ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    indices = np.asarray(indices)
    return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]


def iter_batches(source: ImageSource, batches: Sequence[np.ndarray], *, workers: int = 0,
                 pin_memory: bool = False) -> Iterator[np.ndarray | torch.Tensor]:
    """Yield ``source.load(batch)`` (uint8, (n, H, W, C)) for each batch of indices, in order.

    With ``workers`` the batches are decoded ahead in that many DataLoader processes (kept
    alive for the whole iteration, two batches ahead each); with ``pin_memory`` (a CUDA
    consumer) they come as page-locked tensors, so the copy to the GPU can overlap compute.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        for batch in batches:
            images = source.load(batch)
            yield torch.from_numpy(images).pin_memory() if pin_memory else images
        return
    loader = torch.utils.data.DataLoader(_Batches(source, batches), batch_size=None, shuffle=False,
                                         num_workers=workers, prefetch_factor=2, pin_memory=pin_memory,
                                         persistent_workers=True)
    for images in loader:
        yield images if pin_memory else images.numpy()


def decoded_batches(source: ImageSource, batches: Sequence[np.ndarray], *, device: str | torch.device = "cpu",
                    workers: int = 0, gpu_decode: bool = True) -> Iterator[np.ndarray | torch.Tensor]:
    """The uint8 batches of ``source`` for a consumer on ``device``: JPEG files decoded and
    resized on the GPU when ``device`` is CUDA (:mod:`pedlib.data.jpeg`; ``gpu_decode``),
    else decoded by ``workers`` DataLoader processes (pinned memory for a CUDA consumer).
    Feature extraction, fine-tuning and ``pedlib rank`` all read images through here."""
    device = torch.device(device)
    if device.type == "cuda" and gpu_decode and source.files is not None:
        from .jpeg import iter_decoded

        return iter_decoded(source, batches, device=device)
    return iter_batches(source, batches, workers=workers, pin_memory=device.type == "cuda")
