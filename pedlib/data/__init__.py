"""Dataset registry: every target is an :class:`ImageSource` (labels now, pixels on demand).

>>> from pedlib import data
>>> data.available()                                   # doctest: +SKIP
['flowers12', 'cifar10', 'mnist5k', 'digits', 'lfw', 'imagefolder', 'csv']
>>> source = data.create("flowers12")                  # doctest: +SKIP
>>> split = data.split(source, seed=0)                  # doctest: +SKIP
>>> images = source.load(split.train)                   # uint8 (n, 224, 224, 3)
"""

from .._extras import require as _require

_require("torch", "pedlib.data")

from ._source import ImageSource, Split, available, cap_per_class, create, register, split

from . import pocket  # noqa: E402,F401  (registers the pocket targets)
from . import folders  # noqa: E402,F401  (registers imagefolder and csv)
from . import paper  # noqa: E402,F401  (registers the paper studies' datasets)

__all__ = ["ImageSource", "Split", "available", "cap_per_class", "create", "register", "split"]
