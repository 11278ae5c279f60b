"""Second-order statistics of a labelled feature matrix, shared by every PED setting.

PED moves every sample rigidly with its class: the moved features are ``X + O[y]`` for a
matrix O of class offsets (n_classes, n_features). A metric that sees the features only
through their Gram matrix, class sums and counts (LogME) or through class means and
variances (GBC) can therefore score any translation from statistics computed once, without
materialising the moved N x D matrix. :class:`FeatureStatistics` computes those statistics
lazily and caches them; :meth:`FeatureStatistics.translated` describes one translation.

A metric opts in with ``register(..., from_statistics=fn)`` where ``fn(statistics,
**options) -> float``; every other metric gets the moved features (:meth:`Translation.features`).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import scipy.linalg
import scipy.linalg.blas

from .blockwise import (add_class_offsets, class_sums, class_sums_and_weighted_squares, class_variances,
                     class_weighted_scatter)
from .validation import LabelledFeatures

__all__ = ["FeatureStatistics", "Translation", "eigh"]


def eigh(matrix: np.ndarray, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending, clipped at 0) and eigenvectors of a Gram matrix.

    A Gram matrix is positive semi-definite; its zero eigenvalues come out of any solver at
    rounding level with either sign, and a negative one has no meaning, so they are clipped.
    No eigenvalue is ever dropped: there is no rank tolerance to decide.
    """
    values, vectors = scipy.linalg.eigh(matrix, lower=True, overwrite_a=overwrite, check_finite=False,
                                        driver="evd")
    return np.maximum(values, 0.0), vectors


class FeatureStatistics:
    """Lazily computed, cached statistics of validated features and labels.

    Parameters
    ----------
    data : LabelledFeatures
        From :func:`pedlib.validation.check_features_labels`. The features are referenced,
        never copied or modified.
    translations : int, default 1
        How many translations (PED settings) will be scored from these statistics. With
        several, LogME evaluates each one as a rank-C update of the within-class scatter's
        eigendecomposition (computed once) instead of a new eigendecomposition per setting.

    Attributes
    ----------
    features : ndarray of shape (n_samples, n_features)
    codes : ndarray of shape (n_samples,)
    counts : ndarray of shape (n_classes,)
    primal : bool
        True when N > D: LogME works on the D x D Gram ``F^T F``; else on the N x N kernel
        ``F F^T`` (the reference code's two branches).
    """

    def __init__(self, data: LabelledFeatures, translations: int = 1):
        self.data = data
        self.features = data.features
        self.codes = data.codes
        self.counts = data.counts
        self.n_samples, self.n_features = data.features.shape
        self.n_classes = data.n_classes
        self.primal = self.n_samples > self.n_features
        self.translations = int(translations)
        self._scatter: dict[bytes, np.ndarray] = {}

    # -- first-order --------------------------------------------------------------------
    @cached_property
    def class_sums(self) -> np.ndarray:
        """(n_classes, n_features): ``Y^T F``."""
        return class_sums(self.features, self.codes, self.n_classes)

    @cached_property
    def class_means(self) -> np.ndarray:
        """(n_classes, n_features)."""
        return self.class_sums / self.counts[:, None]

    @cached_property
    def class_variances(self) -> np.ndarray:
        """(n_classes, n_features): per-class population variances (two-pass); a translation
        leaves them unchanged."""
        return class_variances(self.features, self.codes, self.counts, self.class_means)

    @cached_property
    def column_mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and population std (D,), (D,) of the features themselves."""
        return self.features.mean(axis=0), self.features.std(axis=0)

    def class_scatter(self, weights: np.ndarray) -> np.ndarray:
        """Per class ``1/n_c sum_{i in c} sum_d w_d (x_id - mu_cd)^2``, shape (n_classes,).

        Cached per weight vector (by value): PED's radii under one reference serve every
        setting that uses it.
        """
        key = np.asarray(weights, dtype=np.float64).tobytes()
        if key not in self._scatter:
            squares = None
            if "class_sums" not in self.__dict__:  # not computed yet: one pass gives both
                self.__dict__["class_sums"], squares = class_sums_and_weighted_squares(
                    self.features, self.codes, self.n_classes, weights)
            self._scatter[key] = class_weighted_scatter(self.features, self.codes, self.counts,
                                                        self.class_means, weights, squares)
        return self._scatter[key]

    # -- second-order -------------------------------------------------------------------
    @cached_property
    def gram(self) -> np.ndarray:
        """``F^T F`` (D, D) when :attr:`primal`, else ``F F^T`` (N, N)."""
        f = self.features
        return f.T @ f if self.primal else f @ f.T  # numpy uses syrk for a matrix times its transpose

    @cached_property
    def gram_eigh(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (clipped at 0) and eigenvectors of :attr:`gram`."""
        return eigh(self.gram)

    @cached_property
    def within_scatter_eigh(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigendecomposition of the within-class scatter ``S_w = F^T F - M^T diag(n) M`` (D, D),
        also when N <= D (where :attr:`gram` is the kernel and ``F^T F`` is formed here)."""
        means = self.class_means
        between = (means.T * self.counts) @ means
        scatter = self.gram if self.primal else self.features.T @ self.features
        return eigh(scatter - between, overwrite=True)

    def translated(self, offsets: np.ndarray | None) -> "Translation":
        """The statistics of ``features + offsets[codes]`` (offsets of shape (n_classes, n_features))."""
        return Translation(self, offsets)


class Translation:
    """One per-class translation of a :class:`FeatureStatistics`: ``X' = X + O[y]``.

    Every quantity is derived from the base statistics; only :meth:`features` builds the
    moved N x D matrix, for the metrics that need samples.
    """

    def __init__(self, base: FeatureStatistics, offsets: np.ndarray | None):
        self.base = base
        if offsets is not None:
            offsets = np.asarray(offsets, dtype=np.float64)
            if offsets.shape != (base.n_classes, base.n_features):
                raise ValueError(f"offsets must have shape {(base.n_classes, base.n_features)}, "
                                 f"got {offsets.shape}")
            if not offsets.any():
                offsets = None
        self.offsets = offsets
        self._features: np.ndarray | None = None
        self._derived: dict[str, object] = {}

    @property
    def identity(self) -> bool:
        return self.offsets is None

    @cached_property
    def class_sums(self) -> np.ndarray:
        """(n_classes, n_features): ``S + diag(n) O``."""
        base = self.base
        return base.class_sums if self.identity else base.class_sums + base.counts[:, None] * self.offsets

    @cached_property
    def class_means(self) -> np.ndarray:
        base = self.base
        return base.class_means if self.identity else base.class_means + self.offsets

    @property
    def class_variances(self) -> np.ndarray:
        return self.base.class_variances

    def _gram_lower(self) -> np.ndarray:
        """The moved features' Gram matrix (D, D) or kernel (N, N) as a symmetric rank-2C
        update of the base's, in a new Fortran-ordered array of which only the lower triangle
        is set (what :func:`scipy.linalg.eigh` reads with ``lower=True``).

        Primal: ``G + A O + O^T A^T`` with ``A = (S + diag(n) O / 2)^T``, which expands to
        ``G + S^T O + O^T S + O^T diag(n) O``. Dual: ``K + A E^T + E A^T`` with E the (N, C)
        one-hot labels and ``A = F O^T + E (O O^T) / 2``. One BLAS ``syr2k`` either way.
        """
        base = self.base
        o = self.offsets
        if base.primal:
            left, right = (base.class_sums + 0.5 * base.counts[:, None] * o).T, o.T  # (D, C) each
        else:
            right = np.zeros((base.n_samples, base.n_classes))
            right[np.arange(base.n_samples), base.codes] = 1.0
            left = base.features @ o.T + 0.5 * (o @ o.T)[base.codes]
        # base.gram is symmetric, so its transpose is a Fortran-ordered copy of it: no reordering.
        gram = base.gram.copy().T
        return scipy.linalg.blas.dsyr2k(1.0, left, right, beta=1.0, c=gram, lower=1, overwrite_c=1)

    @cached_property
    def gram_eigh(self) -> tuple[np.ndarray, np.ndarray]:
        return self.base.gram_eigh if self.identity else eigh(self._gram_lower(), overwrite=True)

    def derived(self, name: str, compute):
        """``compute()``, once per translation: what several metrics derive alike from it
        (LogME's fixed point serves ``logme`` and ``logme_reference``)."""
        if name not in self._derived:
            self._derived[name] = compute()
        return self._derived[name]

    def features(self) -> np.ndarray:
        """The moved features ``X + O[y]`` (built once, then cached; the base features
        themselves when O = 0). Metrics must not modify it."""
        base = self.base
        if self.identity:
            return base.features
        if self._features is None:
            self._features = add_class_offsets(base.features, base.codes, self.offsets)
        return self._features
