"""Does each port compute what its original file computes? The agreement check.

Each port of :mod:`pedlib.models.ports` runs beside its original runtime (the ``.tflite``
file; for the two ``.h5`` models their float ``.tflite`` twin, the same network) on the same
images, resized to the model's input size by the same code:

* **cosine similarity** of the pooled features, image by image (median and minimum);
* **top-1 agreement** of the source-class predictions, where the file has a classifier.

A port must reach a median cosine of :data:`MIN_COSINE` and a top-1 agreement of
:data:`MIN_TOP1`. Ports of float files reproduce them exactly (cosine 1.000, agreement 100%
measured); any shortfall there, and any cosine shortfall, is an error
(:class:`~pedlib.models.ports.PortMismatch`). A port of a *quantized* file computes the float
network the quantized one approximates: the original's uint8 activations (steps of up to
0.35 in the MobileNetV2 bottlenecks) move near-tied logits, so on the out-of-domain pocket
targets (digits, MNIST, LFW at 224 px, where ImageNet predictions are nearly flat) its top-1
can disagree with the float port's more than 10% of the time while the features agree
(median cosine >= 0.97). Such a shortfall is reported in the table's ``note`` (and, by the
study's port check, in one line for all ports), not raised: it is a property of the
original, not of the port.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from .. import assets
from ..data.images import to_model_input
from .ports import PORTS, PortMismatch, load_port

__all__ = ["MIN_COSINE", "MIN_TOP1", "check_port", "assess", "cosine_similarities", "resize_to",
           "resize_for"]

MIN_COSINE = 0.97
MIN_TOP1 = 0.90


def cosine_similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays (1 where both rows are zero)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    same = np.all(a == b, axis=1)
    return np.divide((a * b).sum(axis=1), norms, out=np.where(same, 1.0, 0.0), where=norms > 0)


def check_port(name: str, images: np.ndarray, *, mirror=None, batch_size: int = 64) -> dict:
    """Compare the port ``name`` with its original runtime on uint8 ``images`` (N, H, W, C).

    Both runtimes get the same pixels, resized to the model's input size by
    :func:`pedlib.data.images.to_model_input` (the TFLite side rounds them to its input
    type). The port computes its features through :meth:`TorchBackbone.extract`, as the
    study's extraction does, and its classifier on them. The original runs on one thread, so
    the figures are the same on every run.

    Returns
    -------
    dict: model, source, reference, images, cosine_median, cosine_min, top1_agreement (NaN
    where the file has no classifier), seconds (both runtimes).
    """
    from . import get_spec
    from .tflite import TFLiteBackbone
    from .torch_backbone import TorchBackbone

    started = time.perf_counter()
    port = PORTS[name]
    spec = get_spec(name)
    module, normalisation = load_port(name, mirror=mirror)
    # The port runs as the study's extraction runs it (channels-last, the CPU rewrite of
    # :mod:`.inference`, its batches): the check covers the features the study uses.
    features = TorchBackbone(spec, module, **normalisation).extract(images, batch_size=batch_size)
    with torch.no_grad():
        logits = module.head(torch.from_numpy(features)).numpy()
    original = TFLiteBackbone(spec, assets.resolve(port.reference, mirror=mirror), threads=1,
                              pixels=port.pixels)
    reference_features, reference_logits = original.run(images)
    cosine = cosine_similarities(features, reference_features)
    top1 = (float(np.mean(logits.argmax(1) == reference_logits.argmax(1)))
            if reference_logits is not None and logits.shape == reference_logits.shape else float("nan"))
    return dict(model=name, source=port.source.removeprefix("models/"),
                reference=port.reference.removeprefix("models/"), images=int(len(images)),
                cosine_median=float(np.median(cosine)), cosine_min=float(cosine.min()),
                top1_agreement=top1, seconds=time.perf_counter() - started)


def _quantized(name: str, *, mirror=None) -> bool:
    from .tflite import open_interpreter

    if not PORTS[name].source.endswith(".tflite"):
        return False
    interpreter = open_interpreter(assets.resolve(PORTS[name].source, mirror=mirror), 1)
    return any(d["dtype"] in (np.uint8, np.int8) for d in interpreter.get_tensor_details()
               if len(d["shape"]) == 4 and d["shape"][0] > 1)  # 4-D weights, not the input


def assess(result: dict, *, mirror=None) -> dict:
    """Add ``quantized`` and ``note`` to a :func:`check_port` result; raise
    :class:`PortMismatch` where the port fails a bar it must meet (see the module docstring);
    where a quantized original keeps it below the top-1 bar, ``note`` says so."""
    name = result["model"]
    quantized = _quantized(name, mirror=mirror)
    problems = []
    if not result["cosine_median"] >= MIN_COSINE:
        problems.append(f"median cosine {result['cosine_median']:.4f} < {MIN_COSINE}")
    top1 = result["top1_agreement"]
    if not np.isnan(top1) and top1 < MIN_TOP1:
        if quantized and not problems:
            note = (f"top-1 below {MIN_TOP1:.2f}: the original is quantized (uint8/int8 activations "
                    "shift near-tied logits); features agree")
            return {**result, "quantized": True, "note": note}
        problems.append(f"top-1 agreement {top1:.3f} < {MIN_TOP1}")
    if problems:
        raise PortMismatch(f"port {name} disagrees with its original {result['reference']} on "
                           f"{result['images']} images: {'; '.join(problems)}. Its weights did not "
                           "land where they should (pedlib.models.ports)")
    return {**result, "quantized": quantized, "note": ""}


def resize_to(images: np.ndarray, size: int) -> np.ndarray:
    """``images`` (uint8 (N, H, W, 1 or 3)) as uint8 RGB (N, size, size, 3), resized as every
    model's input is (:func:`pedlib.data.images.to_model_input`), so that both runtimes of a
    check see the same pixels."""
    x = to_model_input(images, size, 3)
    return x.round().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def resize_for(name: str, images: np.ndarray) -> np.ndarray:
    """:func:`resize_to` the input size of the model ``name``."""
    from . import get_spec

    return resize_to(images, get_spec(name).input_size)
