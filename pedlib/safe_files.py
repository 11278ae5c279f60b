"""Files from elsewhere are data, never code: checkpoints and pickles that pedlib did not write
load through allow-lists.

A pickle names the functions that rebuild its objects, so unpickling a tampered file can run
any code. :func:`load_checkpoint` reads PyTorch checkpoints with ``weights_only=True`` (tensors,
containers and numbers) plus the few globals that real checkpoints carry
(:data:`CHECKPOINT_GLOBALS`); :func:`load_pickle` reads plain pickles (the CIFAR python batches)
allowing numpy arrays and Python builtins alone (:data:`PICKLE_GLOBALS`). A file that asks
for anything else is refused with :class:`UnsafeFile`, which names the file and what it asked for.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from pathlib import Path

__all__ = ["CHECKPOINT_GLOBALS", "PICKLE_GLOBALS", "UnsafeFile", "load_checkpoint", "load_pickle"]


class UnsafeFile(pickle.UnpicklingError):
    """A file asked to run code (a global outside the allow-list) while being loaded."""


def _numpy_globals() -> list:
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype,
            *{type(np.dtype(t)) for t in ("f4", "f8", "i4", "i8", "u1", "b1")}]


#: What a checkpoint may hold besides tensors and containers: the training arguments some
#: self-supervised releases (PyContrast's InfoMin and InsDis) save with their weights, and
#: numpy scalars and arrays (an accuracy, an epoch counter).
CHECKPOINT_GLOBALS = (argparse.Namespace,)

#: (module, name) pairs a plain pickle may name: numpy's array and scalar rebuilders, under
#: both of numpy's module names (a file written with numpy 1 says ``numpy.core``).
PICKLE_GLOBALS = frozenset(
    {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
     for name in ("_reconstruct", "scalar")}
    | {("numpy", "ndarray"), ("numpy", "dtype")}
    | {("numpy.dtypes", name) for name in ("Float32DType", "Float64DType", "Int32DType", "Int64DType",
                                           "UInt8DType", "BoolDType", "BytesDType", "StrDType")}
    | {("_codecs", "encode")}  # how Python 3 writes bytes at pickle protocol 2: a pure function
    | {("builtins", name) for name in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "int",
                                       "float", "complex", "bool", "str", "bytes", "slice", "range")}
)


def load_checkpoint(path: str | os.PathLike, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with :data:`CHECKPOINT_GLOBALS` allowed.

    Raises
    ------
    UnsafeFile
        The file asks for a global outside the allow-list (it would run code when loaded).
    """
    import torch

    try:
        with torch.serialization.safe_globals([*CHECKPOINT_GLOBALS, *_numpy_globals()]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        asked = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = asked.group(1).rstrip(".") if asked else "a global outside the allow-list"
        raise UnsafeFile(f"{path}: refused: loading it would call {what}, which is not data "
                         "(pedlib loads tensors, numbers, containers and argparse.Namespace from "
                         "checkpoints it did not write)") from None


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, handle, path, **options):
        super().__init__(handle, **options)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in PICKLE_GLOBALS:
            raise UnsafeFile(f"{self.path}: refused: loading it would call {module}.{name}, which is not data "
                             "(pedlib loads numpy arrays and Python builtins from pickles it did not write)")
        return super().find_class(module, name)


def load_pickle(path: str | os.PathLike, *, encoding: str = "ASCII"):
    """The object of a pickle file that holds only numpy arrays and builtins.

    Raises
    ------
    UnsafeFile
        The file names any other global (it would run code when loaded).
    """
    with open(path, "rb") as handle:
        return _DataUnpickler(handle, Path(path), encoding=encoding).load()
