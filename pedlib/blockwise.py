"""Blockwise per-class reductions (sums, means, variances, Gram matrices) that the metrics and
PED share (vectorised, memory linear in the data).

Work on large matrices goes through row blocks with reused buffers: every fresh N x D
temporary costs a page-faulting allocation (seconds for a 50k x 2048 matrix on a virtual
machine), while a block buffer is allocated once per call.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import scipy.sparse

# Large enough for efficient BLAS on a block (2048 rows of 2048 float64), small enough to
# keep temporaries far below the feature matrix.
_BLOCK_BYTES = 32 * 2**20
# Blocks read twice in a row (two reductions in one pass) stay in a 32 MB L3 cache.
_CACHE_BLOCK_BYTES = 4 * 2**20


def row_blocks(n_rows: int, n_cols: int, block_bytes: int = _BLOCK_BYTES) -> Iterator[slice]:
    """Yield slices that split ``n_rows`` into blocks of about ``block_bytes`` float64 values."""
    step = max(1, block_bytes // (8 * max(n_cols, 1)))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


class BlockBuffer:
    """A reusable (block_rows, n_cols) float64 scratch array; ``view(rows)`` fits a block."""

    def __init__(self, n_rows: int, n_cols: int, block_bytes: int = _BLOCK_BYTES):
        step = max(1, block_bytes // (8 * max(n_cols, 1)))
        self._array = np.empty((min(step, n_rows), n_cols))

    def view(self, rows: slice) -> np.ndarray:
        return self._array[: rows.stop - rows.start]


def gather(table: np.ndarray, codes: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``table[codes]`` written into ``out`` (no temporary); codes are already validated."""
    return np.take(table, codes, axis=0, out=out, mode="clip")


def indicator(codes: np.ndarray, n_classes: int) -> scipy.sparse.csr_array:
    """Sparse class-membership matrix of shape (n_classes, n_samples): ``1`` where ``codes == c``."""
    n = len(codes)
    return scipy.sparse.csr_array((np.ones(n), (codes, np.arange(n))), shape=(n_classes, n))


def class_sums(values: np.ndarray, codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Sum the rows of ``values`` (n_samples, k) per class; returns (n_classes, k)."""
    return np.asarray(indicator(codes, n_classes) @ values)


def class_means(features: np.ndarray, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Class means, shape (n_classes, n_features)."""
    return class_sums(features, codes, len(counts)) / counts[:, None]


def class_variances(features: np.ndarray, codes: np.ndarray, counts: np.ndarray,
                    means: np.ndarray) -> np.ndarray:
    """Per-class, per-feature population variances (ddof=0), shape (n_classes, n_features).

    Two-pass (centred) for accuracy, in row blocks: the extra memory is one block.
    """
    n_classes = len(counts)
    sums = np.zeros_like(means)
    buffer = BlockBuffer(*features.shape)
    for rows in row_blocks(*features.shape):
        centred = gather(means, codes[rows], buffer.view(rows))
        np.subtract(features[rows], centred, out=centred)
        np.square(centred, out=centred)
        sums += class_sums(centred, codes[rows], n_classes)
    return sums / counts[:, None]


def within_class_gram(blocks: Iterator[tuple[slice, np.ndarray]], codes: np.ndarray,
                      means: np.ndarray, n_rows: int) -> np.ndarray:
    """``sum_i (x_i - mu_{y_i})(x_i - mu_{y_i})^T`` over row blocks, shape (n_features, n_features)."""
    n_features = means.shape[1]
    gram = np.zeros((n_features, n_features))
    buffer = BlockBuffer(n_rows, n_features)
    for rows, block in blocks:
        centred = gather(means, codes[rows], buffer.view(rows))
        np.subtract(block, centred, out=centred)
        gram += centred.T @ centred
    return gram


def class_sums_and_weighted_squares(features: np.ndarray, codes: np.ndarray, n_classes: int,
                                    weights: np.ndarray, *, sums: bool = True,
                                    block_bytes: int = _CACHE_BLOCK_BYTES) -> tuple[np.ndarray | None, np.ndarray]:
    """Class sums (n_classes, n_features), or None without ``sums``, and per-class
    ``sum_{i in c} sum_d w_d x_id^2`` (n_classes,) in one pass over the features: blocks small
    enough to stay in cache are read once for both."""
    n_rows, n_cols = features.shape
    totals = np.zeros((n_classes, n_cols)) if sums else None
    squared_norms = np.empty(n_rows)
    buffer = BlockBuffer(n_rows, n_cols, block_bytes)
    for rows in row_blocks(n_rows, n_cols, block_bytes):
        block = features[rows]
        if sums:
            totals += class_sums(block, codes[rows], n_classes)
        squares = np.square(block, out=buffer.view(rows))
        squared_norms[rows] = squares @ weights
    return totals, np.bincount(codes, weights=squared_norms, minlength=n_classes)


def class_weighted_scatter(features: np.ndarray, codes: np.ndarray, counts: np.ndarray,
                           means: np.ndarray, weights: np.ndarray,
                           weighted_squares: np.ndarray | None = None) -> np.ndarray:
    """Per class, ``1/n_c sum_{i in c} sum_d w_d (x_id - mu_cd)^2``, shape (n_classes,).

    One pass: ``E_c[||x||_w^2] - ||mu_c||_w^2`` (``weighted_squares``, the per-class sums of
    ``||x||_w^2``, may come from :func:`class_sums_and_weighted_squares`). Where that
    difference loses more than half of its significant digits to cancellation (a class far
    from the origin relative to its spread), the exact two-pass sum is used instead.
    """
    if weighted_squares is None:
        _, weighted_squares = class_sums_and_weighted_squares(features, codes, len(counts), weights,
                                                              sums=False, block_bytes=_BLOCK_BYTES)
    second_moment = weighted_squares / counts
    scatter = second_moment - (means * means) @ weights
    inaccurate = scatter < 1e-8 * second_moment
    if inaccurate.any():
        exact = class_variances(features, codes, counts, means) @ weights
        scatter = np.where(inaccurate, exact, scatter)
    return np.maximum(scatter, 0.0)


def add_class_offsets(features: np.ndarray, codes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``features + offsets[codes]`` as a new array, without an N x D gathered temporary."""
    out = np.empty_like(features)
    for rows in row_blocks(*features.shape):
        block = gather(offsets, codes[rows], out[rows])
        block += features[rows]
    return out
