"""Model registry: pretrained backbones that turn uint8 images into pooled penultimate features.

>>> from pedlib import models
>>> models.list_models(family="mobilenet")           # doctest: +SKIP
>>> backbone = models.create_model("cifar_resnet20")  # doctest: +SKIP
>>> features = backbone.extract(images)               # float32 (N, 64)
"""

from .._extras import require as _require

_require("torch", "pedlib.models")

from ._spec import (MIN_BATCH, Backbone, ModelSpec, create_model, extraction_batches, get_spec, list_models,
                    register_model, weights_id, zoos)

from . import pocket  # noqa: E402,F401  (registers the pocket zoo)

__all__ = ["Backbone", "ModelSpec", "create_model", "get_spec", "list_models", "register_model", "weights_id",
           "zoos", "extraction_batches", "MIN_BATCH"]
from . import paper  # noqa: E402,F401  (registers the paper studies' models)
