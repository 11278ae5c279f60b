"""The paper studies' models: 12 self-supervised ResNet-50s (ssl-transfer) and 11 supervised
torchvision ImageNet models (SFDA's supervised group).

Self-supervised checkpoints are read from ``$PEDLIB_MODELS/<name>.pth`` (default
``~/.cache/pedlib/models``), downloading the original release where its URL is public. The
original files are accepted as their authors published them (see :func:`load_ssl_resnet50`).
BYOL (a JAX pickle) and SimCLR v1/v2 (TensorFlow checkpoints) need a one-off conversion to a
torchvision ResNet-50 state dict (README, "Paper studies"); the converted file goes in the
same folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from ..safe_files import load_checkpoint
from ._spec import ModelSpec, register_model
from .hub import PooledFeatures, resolve as resolve_hub, unnest_state_dict
from .torch_backbone import TorchBackbone

__all__ = ["SSL_MODELS", "SUPERVISED_MODELS", "load_ssl_resnet50", "ssl_checkpoint_path"]

log = logging.getLogger(__name__)

#: name -> public URL of the original release (None: supply the file in $PEDLIB_MODELS).
#: Checksums are not published by the authors; the features' records keep each file's sha256.
SSL_MODELS: dict[str, str | None] = {
    "byol": None,  # JAX pickle: convert (README)
    "deepcluster-v2": "https://dl.fbaipublicfiles.com/deepcluster/deepclusterv2_800ep_pretrain.pth.tar",
    "infomin": None,
    "insdis": None,
    "moco-v1": "https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v1_200ep/moco_v1_200ep_pretrain.pth.tar",
    "moco-v2": "https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",
    "pcl-v1": "https://storage.googleapis.com/sfr-pcl-data-research/PCL_checkpoint/PCL_v1_epoch200.pth.tar",
    "pcl-v2": "https://storage.googleapis.com/sfr-pcl-data-research/PCL_checkpoint/PCL_v2_epoch200.pth.tar",
    "sela-v2": "https://dl.fbaipublicfiles.com/deepcluster/selav2_400ep_pretrain.pth.tar",
    "simclr-v1": None,  # TensorFlow checkpoint: convert (README)
    "simclr-v2": None,  # TensorFlow checkpoint: convert (README)
    "swav": "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar",
}

SUPERVISED_MODELS = ("resnet34", "resnet50", "resnet101", "resnet152", "densenet121", "densenet169",
                     "densenet201", "mnasnet1_0", "mobilenet_v2", "googlenet", "inception_v3")

_PREFIXES = ("", "module.", "module.encoder_q.", "encoder_q.", "module.encoder.", "encoder.",
             "module.backbone.", "backbone.", "module.model.", "model.")
_HEADS = ("fc.", "projection", "prototypes", "head", "mlp", "classifier")


def load_ssl_resnet50(path: str | os.PathLike) -> nn.Module:
    """A torchvision ResNet-50 (fc removed) with the backbone weights of an SSL checkpoint.

    Accepts weights nested under ``state_dict``, ``model`` or ``resnet`` (at any depth) and
    key prefixes such as ``module.``, ``module.encoder_q.``, ``encoder.``; the prefix under
    which every backbone key is found is used. Projection heads, prototypes and fc are
    dropped. Anything else under that prefix, or any missing backbone key, is an error that
    lists the keys: a checkpoint is never loaded partially.
    """
    import torchvision

    path = Path(path)
    state = unnest_state_dict(load_checkpoint(path), path)
    net = torchvision.models.resnet50()
    net.fc = nn.Identity()
    wanted = set(net.state_dict())
    best = max(_PREFIXES, key=lambda p: sum(k.startswith(p) and k[len(p):] in wanted for k in state))
    found = {k[len(best):]: v for k, v in state.items() if k.startswith(best) and k[len(best):] in wanted}
    missing = sorted(wanted - set(found))
    unexpected = sorted(k for k in state if k.startswith(best) and k[len(best):] not in wanted
                        and not k[len(best):].startswith(_HEADS))
    if best == "":  # other networks (e.g. MoCo's encoder_k) only count when nothing is prefixed
        unexpected = [k for k in unexpected if "." in k and not k.startswith(("encoder_k", "module.encoder_k"))]
    if missing or unexpected:
        raise ValueError(f"{path}: not loadable as a ResNet-50 backbone (prefix {best!r}); "
                         f"missing {len(missing)} keys {missing[:6]}; unmatched {len(unexpected)} keys "
                         f"{unexpected[:6]}")
    net.load_state_dict(found, strict=True)
    return net


def ssl_checkpoint_path(name: str, *, download: bool = True) -> Path:
    """``$PEDLIB_MODELS/<name>.pth``, downloading the public release there if needed."""
    folder = Path(os.environ.get("PEDLIB_MODELS") or Path.home() / ".cache" / "pedlib" / "models")
    path = folder / f"{name}.pth"
    if path.is_file():
        return path
    url = SSL_MODELS[name]
    if url is not None and download:
        import pooch

        try:
            fetched = pooch.retrieve(url, known_hash=None, fname=f"{name}.pth", path=folder,
                                     progressbar=True)
            return Path(fetched)
        except Exception as error:  # network failures come in many types
            problem = f"download from {url} failed ({type(error).__name__}: {error})"
    else:
        problem = "its release needs a conversion (README, 'Paper studies')" if url is None else "download disabled"
    raise FileNotFoundError(f"self-supervised checkpoint {name!r} is not in {folder} and {problem}. "
                            f"Put the file at {path} (set PEDLIB_MODELS to use another folder).")


_FINGERPRINTS: dict[tuple, str] = {}


def _ssl_fingerprint(spec: ModelSpec) -> str:
    """sha256 of the checkpoint file (memoised per path, size and modification time), so that
    replacing a file invalidates the features and fine-tuning results made from it."""
    try:
        path = ssl_checkpoint_path(spec.name, download=False)
    except FileNotFoundError:
        return f"{spec.weights}:missing"
    stat = path.stat()
    token = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if token not in _FINGERPRINTS:
        import hashlib

        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _FINGERPRINTS[token] = "sha256:" + digest.hexdigest()
    return _FINGERPRINTS[token]


def _ssl_factory(spec: ModelSpec, *, mirror=None, device="cpu", threads: int = 2):
    net = load_ssl_resnet50(ssl_checkpoint_path(spec.name))
    return TorchBackbone(spec, PooledFeatures(net, 2048), device=device)


def _supervised_factory(spec: ModelSpec, *, mirror=None, device="cpu", threads: int = 2):
    backbone = resolve_hub(spec.name, device=device)
    backbone.spec = spec
    return backbone


for _name in SSL_MODELS:
    register_model(ModelSpec(name=_name, asset="", runtime="torch", input_size=224, channels=3,
                             normalisation="imagenet mean/std", source="imagenet", family="resnet50-ssl",
                             trainable=True, factory=_ssl_factory, weights=f"ssl-transfer:{_name}", zoo="paper-ssl",
                             fingerprint=_ssl_fingerprint))
for _name in SUPERVISED_MODELS:
    register_model(ModelSpec(name=_name, asset="", runtime="torch", input_size=299 if _name == "inception_v3" else 224,
                             channels=3, normalisation="imagenet mean/std", source="imagenet", family="supervised",
                             trainable=True, factory=_supervised_factory, weights=f"torchvision:{_name}:DEFAULT",
                             zoo="paper-supervised"))
