"""TFLite backbones run with ai-edge-litert; features are read from the global pooling tensor."""

from __future__ import annotations

import warnings

import numpy as np

from ..data.images import to_model_input
from ._spec import Backbone, ModelSpec

__all__ = ["TFLiteBackbone", "pooled_tensor_index"]

_POOL_OPS = ("AVERAGE_POOL_2D", "MEAN")


def _interpreter(path, threads: int, **options):
    from ai_edge_litert.interpreter import Interpreter

    with warnings.catch_warnings():
        # preserve_all_tensors is what lets us read the pooled layer; its memory cost is small
        # for these models, so the warning about it is noise here.
        warnings.simplefilter("ignore", UserWarning)
        return Interpreter(model_path=str(path), num_threads=threads, **options)


def pooled_tensor_index(path) -> int:
    """Index of the output tensor of the model's last global pooling op (AVERAGE_POOL_2D/MEAN).

    The op list is read from an undelegated interpreter (the XNNPACK delegate fuses ops);
    tensor indices are the same in the delegated one.
    """
    from ai_edge_litert.interpreter import OpResolverType

    plain = _interpreter(path, 1,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    pools = [op for op in plain._get_ops_details() if op["op_name"] in _POOL_OPS]
    if not pools:
        raise ValueError(f"{path}: no global pooling op (AVERAGE_POOL_2D or MEAN) found")
    return int(pools[-1]["outputs"][0])


class TFLiteBackbone(Backbone):
    """One image per ``invoke`` (the models have a fixed batch of 1); quantized outputs are
    dequantized with the tensor's scale and zero point."""

    def __init__(self, spec: ModelSpec, path, *, threads: int = 2):
        self.spec = spec
        self._pool = pooled_tensor_index(path)
        self._interpreter = _interpreter(path, threads, experimental_preserve_all_tensors=True)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        details = {t["index"]: t for t in self._interpreter.get_tensor_details()}
        scale, zero = details[self._pool]["quantization"]
        self._dequant = (float(scale), float(zero)) if scale else None
        height, width = (int(v) for v in self._input["shape"][1:3])
        if (height, width) != (spec.input_size, spec.input_size):
            raise ValueError(f"{spec.name}: registry says {spec.input_size}px, model takes "
                             f"{height}x{width}")

    def _prepare(self, images: np.ndarray) -> np.ndarray:
        x = to_model_input(images, self.spec.input_size, self.spec.channels)
        x = x.permute(0, 2, 3, 1).numpy()  # NHWC, 0..255
        if self._input["dtype"] == np.uint8:
            return np.round(x).astype(np.uint8)
        if self.spec.normalisation == "pixels/255":
            return (x / 255.0).astype(np.float32)
        return x.astype(np.float32)

    def _features(self, images: np.ndarray) -> np.ndarray:
        x = self._prepare(images)
        out = None
        for i in range(len(x)):
            self._interpreter.set_tensor(self._input["index"], x[i:i + 1])
            self._interpreter.invoke()
            pooled = self._interpreter.get_tensor(self._pool).reshape(-1)
            if out is None:
                out = np.empty((len(x), pooled.size), dtype=np.float32)
            out[i] = pooled
        if self._dequant is not None:
            scale, zero = self._dequant
            out = (out - zero) * scale
        return out
