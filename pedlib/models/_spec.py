"""The backbone contract and the model registry (timm-style: register, list, create)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .._registry import Registry

__all__ = ["ModelSpec", "Backbone", "register_model", "create_model", "list_models", "get_spec", "zoos",
           "weights_id", "extraction_batches", "MIN_BATCH"]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """What a study needs to know about a model without loading it.

    Attributes
    ----------
    name : str
    asset : str
        Manifest path of the weights (``pedlib.assets``), or "" for built-in weights.
    runtime : "tflite" or "torch"
    input_size : int
        Square input side in pixels.
    channels : int
        3 (RGB) or 1 (grayscale).
    normalisation : str
        How 0..255 pixels are mapped to the network's input (documentation and cache key).
    source : str
        The pretraining data ("imagenet", "cifar10", "mnist", ...); names a dataset when the
        study can use it as PED's reference sample.
    family : str
        Architecture family, for homogeneous sub-pools ("mobilenet", "resnet", "lenet").
    trainable : bool
        Whether pedlib can fine-tune it (a PyTorch module).
    weights : str
        Identifies weights that are not a manifest asset (a torchvision weights enum, a
        checkpoint's sha256); part of the feature cache key.
    zoo : str
        The collection it belongs to: "pocket", "paper-ssl", "paper-supervised", or "hub" (a
        name :func:`pedlib.models.hub.resolve` loaded: torchvision, timm, a checkpoint).
    fingerprint : callable ``(spec) -> str``, optional
        Identifies the weights' content where they live in a user's file (an SSL checkpoint);
        see :func:`weights_id`.
    """

    name: str
    asset: str
    runtime: str
    input_size: int
    channels: int
    normalisation: str
    source: str
    family: str
    trainable: bool
    factory: Callable[..., "Backbone"] = field(repr=False, compare=False, default=None)
    weights: str = ""
    zoo: str = "pocket"
    fingerprint: Callable[["ModelSpec"], str] | None = field(repr=False, compare=False, default=None)


#: The fewest images an extraction batch has when there are that many (:func:`extraction_batches`).
#: In batches of 1-3 images PyTorch runs some layers with other kernels on the CPU (the convolutions
#: in the CIFAR ResNets' blocks, the LeNets' linear layers), which round differently; from 4 images
#: on, each of the 17 pocket models gives an image the same features in any batch (docs/speed.md).
MIN_BATCH = 4


def extraction_batches(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """``indices`` in consecutive batches of ``batch_size``, the last one taking the remainder
    when that would be a batch of fewer than :data:`MIN_BATCH` images, so that an image's
    features do not depend on where it falls (the feature caches' keys hold no batch size).

    >>> [len(b) for b in extraction_batches(np.arange(130), 64)]
    [64, 66]
    """
    from ..data.loader import chunk

    batches = chunk(indices, batch_size)
    if len(batches) > 1 and len(batches[-1]) < min(MIN_BATCH, batch_size):
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


class Backbone:
    """A loaded model. Subclasses implement :meth:`_features` on a preprocessed batch."""

    spec: ModelSpec

    def extract(self, images, *, batch_size: int = 64, progress: bool = False,
                desc: str | None = None, total: int | None = None) -> np.ndarray:
        """Pooled penultimate features of uint8 images (N, H, W, 1 or 3) -> float32 (N, D).

        ``images`` is one array (run in batches of ``batch_size``, :func:`extraction_batches`) or an iterable of uint8
        batches (streamed; ``total`` images, for the progress bar). Images are converted to
        the model's channels and resized to its input size here.
        """
        from ..progress import progress as counter

        if isinstance(images, np.ndarray):
            array, total = images, len(images)
            images = (array[positions[0]:positions[-1] + 1]
                      for positions in extraction_batches(np.arange(total), batch_size))
        elif batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if total == 0:
            raise ValueError("no images to extract features from")
        chunks = []
        bar = counter(total=total, desc=desc or self.spec.name, enabled=progress, unit="img", leave=False)
        for batch in images:
            chunks.append(self.features_of(batch))
            bar.update(len(batch))
        bar.close()
        return self.finish(chunks)

    def features_of(self, batch) -> np.ndarray:
        """Features of one uint8 batch (N, H, W, C), float32 (N, D)."""
        return np.asarray(self._features(batch), dtype=np.float32)

    def finish(self, chunks: list[np.ndarray]) -> np.ndarray:
        """The batches' features as one (N, D) array, checked to be finite."""
        if not chunks:
            raise ValueError("no images to extract features from")
        features = np.concatenate(chunks)
        if not np.isfinite(features).all():
            raise FloatingPointError(f"{self.spec.name} produced non-finite features")
        return features

    def _features(self, images: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def weights_id(spec: ModelSpec) -> str:
    """What identifies ``spec``'s weights in cache keys: the manifest sha256 of its asset, the
    fingerprint of its checkpoint file, or its ``weights`` string."""
    if spec.asset:
        from .. import assets

        return assets.manifest()[spec.asset].sha256
    if spec.fingerprint is not None:
        return spec.fingerprint(spec)
    return spec.weights or "builtin"


_MODELS: Registry[ModelSpec] = Registry("model")


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the registry (``spec.factory(spec, mirror=...)`` builds it)."""
    return _MODELS.add(spec.name, spec)


def get_spec(name: str) -> ModelSpec:
    return _MODELS.get(name)


def list_models(*, zoo: str | None = None, family: str | None = None, source: str | None = None,
                trainable: bool | None = None) -> list[str]:
    """Registered model names, optionally filtered."""
    return [name for name in _MODELS
            if (zoo is None or _MODELS.get(name).zoo == zoo)
            and (family is None or _MODELS.get(name).family == family)
            and (source is None or _MODELS.get(name).source == source)
            and (trainable is None or _MODELS.get(name).trainable == trainable)]


def zoos() -> list[str]:
    """The model collections ("pocket", "paper-ssl", "paper-supervised")."""
    return list(dict.fromkeys(_MODELS.get(name).zoo for name in _MODELS))


def create_model(name: str, *, mirror=None, device: str = "cpu") -> Backbone:
    """Load a registered model's verified weights and return its :class:`Backbone` on ``device``."""
    spec = get_spec(name)
    return spec.factory(spec, mirror=mirror, device=device)
