"""TFLite models run with ai-edge-litert; features are read from the global pooling tensor.

The pocket study computes everything on float PyTorch ports of these files
(:mod:`pedlib.models.ports`); this runtime is the reference those ports are checked against.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

import numpy as np

from ..data.images import to_model_input
from ._spec import Backbone, ModelSpec

__all__ = ["TFLiteBackbone", "open_interpreter", "pooled_tensor_index", "logits_tensor_index"]

_POOL_OPS = ("AVERAGE_POOL_2D", "MEAN")


@contextlib.contextmanager
def _native_notices_silenced():
    """LiteRT's C++ runtime writes ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``
    straight to the process's stderr (file descriptor 2) when it applies its default delegate
    in ``allocate_tensors``; no setting turns it off. Errors still raise in Python."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_interpreter(path, threads: int, **options):
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        # preserve_all_tensors is what lets us read the pooled layer; its memory cost is small
        # for these models, so the warning about it is noise here.
        warnings.simplefilter("ignore", UserWarning)
        return Interpreter(model_path=str(path), num_threads=threads, **options)


def _plain_ops(path) -> list[dict]:
    from ai_edge_litert.interpreter import OpResolverType

    plain = open_interpreter(path, 1,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return plain._get_ops_details()


def logits_tensor_index(path) -> int | None:
    """Index of the input tensor of the model's SOFTMAX op (its logits), or None without one."""
    softmax = [op for op in _plain_ops(path) if op["op_name"] == "SOFTMAX"]
    return int(softmax[-1]["inputs"][0]) if softmax else None


def pooled_tensor_index(path) -> int:
    """Index of the output tensor of the model's last global pooling op (AVERAGE_POOL_2D/MEAN).

    The op list is read from an undelegated interpreter (the XNNPACK delegate fuses ops);
    tensor indices are the same in the delegated one.
    """
    pools = [op for op in _plain_ops(path) if op["op_name"] in _POOL_OPS]
    if not pools:
        raise ValueError(f"{path}: no global pooling op (AVERAGE_POOL_2D or MEAN) found")
    return int(pools[-1]["outputs"][0])


class TFLiteBackbone(Backbone):
    """One image per ``invoke`` (the models have a fixed batch of 1); quantized outputs are
    dequantized with the tensor's scale and zero point.

    ``pixels`` says what a float input takes: ``"raw"`` 0-255 or ``"unit"`` pixels / 255 (a
    quantized input takes the uint8 pixels).
    """

    def __init__(self, spec: ModelSpec, path, *, threads: int = 2, pixels: str = "raw"):
        if pixels not in ("raw", "unit", "quantized"):
            raise ValueError(f"pixels must be 'raw', 'unit' or 'quantized', got {pixels!r}")
        self.spec = spec
        self.pixels = pixels
        self._pool = pooled_tensor_index(path)
        self._logits = logits_tensor_index(path)
        self._interpreter = open_interpreter(path, threads, experimental_preserve_all_tensors=True)
        with _native_notices_silenced():
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        details = {t["index"]: t for t in self._interpreter.get_tensor_details()}
        self._dequant = {index: details[index]["quantization"] for index in (self._pool, self._logits)
                         if index is not None}
        height, width = (int(v) for v in self._input["shape"][1:3])
        if (height, width) != (spec.input_size, spec.input_size):
            raise ValueError(f"{spec.name}: registry says {spec.input_size}px, model takes "
                             f"{height}x{width}")

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        x = to_model_input(images, self.spec.input_size, self.spec.channels)
        x = x.permute(0, 2, 3, 1).numpy()  # NHWC, 0..255
        if self._input["dtype"] == np.uint8:
            return np.round(x).astype(np.uint8)
        if self.pixels == "unit":
            return (x / 255.0).astype(np.float32)
        return x.astype(np.float32)

    def _tensor(self, index: int) -> np.ndarray:
        value = self._interpreter.get_tensor(index).reshape(-1)
        scale, zero = self._dequant[index]
        return (value.astype(np.float32) - zero) * scale if scale else value.astype(np.float32)

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(pooled features (N, D), logits (N, classes) or None without a classifier), float32,
        dequantized."""
        x = self._prepare(images)
        pooled, logits = [], []
        for i in range(len(x)):
            self._interpreter.set_tensor(self._input["index"], x[i:i + 1])
            self._interpreter.invoke()
            pooled.append(self._tensor(self._pool))
            if self._logits is not None:
                logits.append(self._tensor(self._logits))
        return np.stack(pooled), (np.stack(logits) if logits else None)

    def _features(self, images: np.ndarray) -> np.ndarray:
        return self.run(images)[0]
