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

__all__ = ["iter_batches", "chunk"]


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


def iter_batches(source: ImageSource, batches: Sequence[np.ndarray], *,
                 workers: int = 0) -> Iterator[np.ndarray]:
    """Yield ``source.load(batch)`` (uint8, (n, H, W, C)) for each batch of indices, in order."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        for batch in batches:
            yield source.load(batch)
        return
    loader = torch.utils.data.DataLoader(_Batches(source, batches), batch_size=None, shuffle=False,
                                         num_workers=workers, prefetch_factor=2)
    for images in loader:
        yield images.numpy()
