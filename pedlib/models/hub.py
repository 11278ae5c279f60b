"""Models beyond the pocket zoo: torchvision and timm architectures, and local checkpoints.

Names understood by :func:`resolve`:

* a pocket zoo name (``pedlib.models.list_models()``);
* a torchvision classification model (``resnet50``, ``densenet121``, ``inception_v3``, ...)
  with its default ImageNet weights;
* ``timm:<name>`` with timm's pretrained weights;
* ``<architecture>=<checkpoint path>``: a torchvision or ``timm:`` architecture whose weights
  are loaded from a local state dict (nested under ``state_dict``/``model`` and ``module.``
  prefixes are accepted; every backbone key must match).

Features are the input of the last linear layer (the classifier is replaced by identity):
the global-pooled penultimate layer for every torchvision classifier.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from ..safe_files import load_checkpoint
from ._spec import Backbone, ModelSpec, create_model, list_models
from .torch_backbone import TorchBackbone

__all__ = ["resolve", "load_again", "WeightsUnavailable", "PooledFeatures", "strip_classifier", "torchvision_names"]


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be fetched (usually: no network access)."""


class PooledFeatures(nn.Module):
    """``features(x)`` = the wrapped network with its last linear layer replaced by identity."""

    def __init__(self, net: nn.Module, feature_dim: int):
        super().__init__()
        self.net = net
        self.feature_dim = feature_dim
        self.head = nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out.logits if hasattr(out, "logits") else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def strip_classifier(net: nn.Module) -> tuple[nn.Module, int]:
    """Replace the last ``nn.Linear`` of ``net`` by identity; return (net, its input size)."""
    last = None
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise ValueError(f"{type(net).__name__} has no linear classifier to remove")
    parent = net.get_submodule(last.rsplit(".", 1)[0]) if "." in last else net
    dim = net.get_submodule(last).in_features
    setattr(parent, last.rsplit(".", 1)[-1], nn.Identity())
    return net, dim


def torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


_NESTING = ("state_dict", "model", "resnet")


def unnest_state_dict(checkpoint, path) -> dict:
    """The state dict inside ``checkpoint``, however deep under ``state_dict``/``model``/``resnet``."""
    while isinstance(checkpoint, dict):
        inner = next((checkpoint[k] for k in _NESTING if isinstance(checkpoint.get(k), dict)), None)
        if inner is None:
            return checkpoint
        checkpoint = inner
    raise ValueError(f"{path}: not a state dict")


def _checkpoint_state(path: Path) -> dict:
    checkpoint = unnest_state_dict(load_checkpoint(path), path)
    state = {}
    for key, value in checkpoint.items():
        for prefix in ("module.", "encoder_q.", "encoder.", "backbone."):
            key = key.removeprefix(prefix)
        state[key] = value
    return state


def _load_strict(net: nn.Module, state: dict, path: Path):
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        raise ValueError(f"{path}: checkpoint does not match the architecture; missing keys "
                         f"{missing[:8]}{' ...' if len(missing) > 8 else ''}; unexpected keys "
                         f"{unexpected[:8]}")
    net.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


#: How long the Hugging Face hub may take to accept a connection before pedlib works offline.
HUB_TIMEOUT = 3.0


def _hub_reachable(timeout: float = HUB_TIMEOUT) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``) accepts a connection within ``timeout``
    seconds; False in offline mode (``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline(offline: bool):
    """The hub's offline mode for the duration (its cache only), so that an unreachable hub
    fails at once instead of after huggingface_hub's retries (about a minute)."""
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = saved or offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"


def _build(arch: str, *, pretrained: bool):
    """(net, input size, mean, std) for a torchvision name or ``timm:<name>``."""
    if arch.startswith("timm:"):
        import timm

        name = arch.removeprefix("timm:")
        if name not in timm.list_models():
            close = difflib.get_close_matches(name, timm.list_models(), n=3)
            raise KeyError(f"unknown timm model {name!r}" + (f"; did you mean {close}?" if close else ""))
        offline = pretrained and not _hub_reachable()
        try:
            with _hub_offline(offline):
                net = timm.create_model(name, pretrained=pretrained)
        except Exception as error:  # hub/network failures come in many types
            where = ("the Hugging Face hub is unreachable and they are not in its local cache"
                     if offline else f"timm could not fetch them ({_first_line(error)})")
            raise WeightsUnavailable(
                f"no pretrained weights for timm:{name}: {where}. To work offline, pass a local "
                f"checkpoint as timm:{name}=/path/to/weights.pth, or fetch them once with network "
                "access and set HF_HUB_OFFLINE=1 to use the hub's cache") from None
        config = timm.data.resolve_data_config({}, model=net)
        return net, int(config["input_size"][-1]), config["mean"], config["std"]
    import torchvision.models as tvm

    if arch not in torchvision_names():
        raise KeyError(arch)
    weights = tvm.get_model_weights(arch).DEFAULT if pretrained else None
    try:
        net = tvm.get_model(arch, weights=weights, **({"aux_logits": True} if arch in ("inception_v3", "googlenet") and pretrained else {}))
    except Exception as error:
        raise WeightsUnavailable(
            f"no pretrained weights {weights} for {arch}: torchvision could not fetch them "
            f"({_first_line(error)}). To work offline, pass a local checkpoint as "
            f"{arch}=/path/to/weights.pth, or fetch them once with network access (they are kept "
            "in ~/.cache/torch/hub)") from None
    size = 299 if arch == "inception_v3" else 224
    return net, size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_again(spec: ModelSpec, *, mirror=None, device: str = "cpu") -> Backbone:
    """The backbone of a spec :func:`resolve` made (its ``factory``: a worker process loads
    the model again from its name)."""
    return resolve(spec.name, mirror=mirror, device=device)


def resolve(name: str, *, mirror=None, device: str = "cpu") -> Backbone:
    """A backbone for any model name form (see the module docstring).

    Raises
    ------
    KeyError
        Unknown name, with close matches from the pocket zoo and torchvision.
    WeightsUnavailable
        Pretrained weights could not be downloaded.
    """
    if name in list_models() and name not in list_models(zoo="paper-supervised"):
        return create_model(name, mirror=mirror, device=device)
    arch, _, checkpoint = name.partition("=")
    try:
        if checkpoint:
            path = Path(checkpoint).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"checkpoint {path} does not exist")
            net, size, mean, std = _build(arch, pretrained=False)
            net, dim = strip_classifier(net)  # the checkpoint's classifier may have any size
            _load_strict(net, _checkpoint_state(path), path)
            weights = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            net, size, mean, std = _build(arch, pretrained=True)
            net, dim = strip_classifier(net)
            weights = f"{arch}:pretrained-default"
    except KeyError:
        if arch.startswith("timm:"):
            raise
        known = list(dict.fromkeys(list_models() + torchvision_names()))  # paper zoo names are torchvision's
        close = difflib.get_close_matches(arch, known, n=4, cutoff=0.5)
        raise KeyError(f"unknown model {arch!r}" + (f"; did you mean {', '.join(map(repr, close))}?" if close else "")
                       + " Use a pocket zoo name (pedlib.models.list_models()), a torchvision "
                       "classification model, timm:<name>, or <architecture>=<checkpoint path>") from None
    spec = ModelSpec(name=name, asset="", runtime="torch", input_size=size, channels=3,
                     normalisation=f"/255 then mean {tuple(mean)} std {tuple(std)}", source="unknown",
                     family=arch.split(":")[-1], trainable=True, factory=load_again, weights=weights, zoo="hub")
    return TorchBackbone(spec, PooledFeatures(net, dim), device=device, mean=mean, std=std)
