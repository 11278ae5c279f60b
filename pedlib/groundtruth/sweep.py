"""Fine-tuning as a sweep of independent jobs: the paper studies' protocol.

This is the protocol behind the published accuracies (ssl-transfer, Ericsson et al. 2021,
used by SFDA and PED): every layer of the pretrained network is trained with a new linear
head by SGD with Nesterov momentum and a cosine schedule, for a fixed number of steps.

1. **Validation**: the dataset's own val split where it ships one (aircraft, dtd, flowers,
   voc2007), else a seeded stratified ``val_fraction`` of train.
2. **Grid jobs**, one per (learning rate, weight decay): train on train minus val, score on
   val with the dataset's metric (:mod:`pedlib.groundtruth.accuracy`). With
   ``weight_decay_per_lr`` each weight decay is divided by the learning rate.
3. **Final jobs**, one per seed: retrain on all of train (train + val) with the best grid
   point (ties: the first in grid order) and score on test.

Each job is a pure function of its inputs, so jobs run in any order, side by side
(``make -j``) or on several machines. A job saves a checkpoint every ``checkpoint_every``
steps; a rerun resumes from it and ends with the same weights as an uninterrupted run.

Training details: mini-batches of ``batch_size`` follow a seeded permutation per epoch (a
batch never spans two epochs), fixed in advance for every step; with ``augment`` each image
gets a random resized crop (area 8-100%, aspect 3/4-4/3) and a horizontal flip with
probability 1/2, drawn from a generator seeded by (seed, step) and applied to the whole
batch at once with one affine resampling. Loss: cross-entropy, or binary cross-entropy over
the present/absent labels of a multi-label dataset (difficult-only labels are ignored).
BatchNorm statistics are updated while training. On CUDA: channels-last and bfloat16
autocast, JPEG files decoded and resized on the GPU (:mod:`pedlib.data.jpeg`, with
``gpu_decode``), DataLoader batches in pinned memory copied without blocking, and no host
synchronisation per step (divergence is checked on the device and read every
:data:`CHECK_EVERY` steps and at checkpoints); on the CPU: float32 with ``threads`` threads
(bit-reproducible on one machine).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .. import records
from ..safe_files import load_checkpoint
from ..data import ImageSource
from ..data.loader import chunk, decoded_batches
from ..parallel import torch_threads
from .accuracy import evaluate
from .finetune import FinetuneConfig

__all__ = ["SweepConfig", "validation_split", "batch_schedule", "augment_batch", "train", "predict",
           "score", "remove_checkpoint", "CHECK_EVERY"]

#: Steps between reads of the device-side divergence flag (each read waits for the GPU).
CHECK_EVERY = 50


@dataclass(frozen=True)
class SweepConfig(FinetuneConfig):
    """The sweep protocol's settings (see the module docstring); the shared ones are
    :class:`FinetuneConfig`'s, with the paper's values as defaults."""

    learning_rates: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    weight_decays: tuple[float, ...] = (0.0, 1e-6, 1e-5, 1e-4, 1e-3)
    steps: int = 5000
    batch_size: int = 64
    seeds: tuple[int, ...] = (0,)
    weight_decay_per_lr: bool = True
    augment: bool = True
    device: str = "cpu"
    workers: int = 0
    checkpoint_every: int = 500
    gpu_decode: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.checkpoint_every < 1 or self.workers < 0:
            raise ValueError("checkpoint_every must be positive and workers >= 0")

    def grid(self) -> list[tuple[float, float]]:
        """The (learning rate, weight decay) points, learning-rate-major."""
        return [(lr, wd / lr if self.weight_decay_per_lr else wd)
                for lr, wd in itertools.product(self.learning_rates, self.weight_decays)]

    def result_settings(self) -> dict:
        """The settings that change results (workers and checkpointing do not)."""
        settings = self.as_dict()
        for name in ("workers", "checkpoint_every", "seeds", "gpu_decode"):
            settings.pop(name)
        if settings["device"] == "cpu":
            settings.pop("device")
        else:
            settings.pop("threads")
        return settings


def validation_split(source: ImageSource, train: np.ndarray, val_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, val) indices: the dataset's own val images among ``train``, else a seeded
    stratified ``val_fraction`` of ``train``."""
    from sklearn.model_selection import train_test_split

    own = source.val
    if own is not None:
        val = np.intersect1d(train, own)
        return np.setdiff1d(train, val), val
    labels = source.labels[train]
    try:
        fit, val = train_test_split(train, test_size=val_fraction, stratify=labels, random_state=seed)
    except ValueError as error:
        raise ValueError(f"{source.name}: cannot hold out a stratified {val_fraction:.0%} of train "
                         f"for validation ({error})") from None
    return np.sort(fit), np.sort(val)


def batch_schedule(n: int, steps: int, batch_size: int, seed: int) -> np.ndarray:
    """(steps, min(batch_size, n)) positions into the training set: each epoch a seeded
    permutation cut into whole batches (the remainder is dropped)."""
    size = min(batch_size, n)
    per_epoch = n // size
    generator = torch.Generator().manual_seed(seed)
    epochs = math.ceil(steps / per_epoch)
    order = torch.stack([torch.randperm(n, generator=generator)[:per_epoch * size]
                         for _ in range(epochs)])
    return order.reshape(-1, size)[:steps].numpy()


def augment_batch(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop (area 8-100%, aspect 3/4-4/3) + horizontal flip, per image, resampled
    bilinearly back to the input size in one ``grid_sample`` call."""
    n = len(x)
    uniform = torch.rand(n, 5, generator=generator)
    area = 0.08 + 0.92 * uniform[:, 0]
    log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * uniform[:, 1]
    width = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)
    height = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
    centre_x = (1 - width) * (2 * uniform[:, 2] - 1)
    centre_y = (1 - height) * (2 * uniform[:, 3] - 1)
    flip = torch.where(uniform[:, 4] < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _targets(source: ImageSource, indices: np.ndarray) -> torch.Tensor:
    if source.multilabels is not None:
        return torch.as_tensor(source.multilabels[indices], dtype=torch.float32)
    return torch.as_tensor(source.labels[indices], dtype=torch.long)


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if targets.dtype == torch.long:
        return nn.functional.cross_entropy(logits, targets)
    known = targets >= 0  # -1: the class is present only as difficult objects
    losses = nn.functional.binary_cross_entropy_with_logits(logits.float(), targets.clamp(min=0),
                                                            reduction="none")
    return (losses * known).sum() / known.sum().clamp(min=1)


def _batches(source: ImageSource, batches, config: SweepConfig, device: torch.device):
    return decoded_batches(source, batches, device=device, workers=config.workers, gpu_decode=config.gpu_decode)


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train(backbone, source: ImageSource, fit: np.ndarray, *, learning_rate: float,
          weight_decay: float, seed: int, config: SweepConfig, checkpoint: Path | None = None,
          key: str = "", on_step: Callable[[int], None] | None = None) -> nn.Module:
    """Fine-tune a copy of ``backbone.module`` with a new head on ``source[fit]``.

    Parameters
    ----------
    backbone : TorchBackbone
        Its ``module`` exposes ``features``, ``head`` and ``feature_dim``; it is not modified.
    fit : ndarray of int
        Training image indices into ``source``.
    checkpoint : path, optional
        Saved every ``config.checkpoint_every`` steps (with ``key``); a matching checkpoint
        found there is resumed.
    on_step : callable, optional
        Called with the number of finished steps (progress, tests).

    Returns
    -------
    nn.Module, in eval mode, on ``config.device``.
    """
    if len(fit) == 0:
        raise ValueError(f"{source.name}: no training images to fine-tune on")
    device = torch.device(config.device)
    n_classes = len(source.classes)
    with torch_threads(config.threads):
        generator = torch.Generator().manual_seed(seed)
        module = copy.deepcopy(backbone.module).to(device)
        head = nn.Linear(module.feature_dim, n_classes)
        with torch.no_grad():  # seeded init with nn.Linear's default bounds
            bound = 1 / math.sqrt(module.feature_dim)
            head.weight.uniform_(-bound, bound, generator=generator)
            head.bias.uniform_(-bound, bound, generator=generator)
        module.head = head.to(device)
        if device.type == "cuda":
            module.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(module.parameters(), lr=learning_rate, momentum=config.momentum,
                                    nesterov=True, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)
        start = 0
        if checkpoint is not None and checkpoint.is_file():
            state = load_checkpoint(checkpoint, map_location=device)
            if state.get("key") == key:
                module.load_state_dict(state["module"])
                optimizer.load_state_dict(state["optimizer"])
                schedule.load_state_dict(state["schedule"])
                start = state["step"]
        plan = batch_schedule(len(fit), config.steps, config.batch_size, seed)
        batches = [fit[positions] for positions in plan[start:]]
        module.train()
        diverged = torch.zeros((), dtype=torch.bool, device=device)  # read every CHECK_EVERY steps
        checked = start
        for step, images in enumerate(_batches(source, batches, config, device), start):
            x = backbone.preprocess(images, device)
            if config.augment:
                x = augment_batch(x, torch.Generator().manual_seed(seed * 1_000_003 + step))
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            targets = _targets(source, batches[step - start]).to(device, non_blocking=True)
            with _autocast(device):
                loss = _loss(module(x), targets)
            diverged |= ~torch.isfinite(loss.detach())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            done = step + 1
            saving = checkpoint is not None and done % config.checkpoint_every == 0 and done < config.steps
            if saving or done % CHECK_EVERY == 0 or done == config.steps:
                if bool(diverged):  # never checkpoint a diverged run
                    raise FloatingPointError(f"fine-tuning diverged between steps {checked + 1} and {done} "
                                             f"(non-finite loss) with learning rate {learning_rate:g}")
                checked = done
            if saving:
                _save_checkpoint(checkpoint, dict(key=key, step=done, module=module.state_dict(),
                                                  optimizer=optimizer.state_dict(),
                                                  schedule=schedule.state_dict()))
            if on_step is not None:
                on_step(done)
    return module.eval()


def _save_checkpoint(path: Path, state: dict):
    records.atomic_write(path, lambda tmp: torch.save(state, tmp))


@torch.no_grad()
def predict(module: nn.Module, backbone, source: ImageSource, indices: np.ndarray,
            config: SweepConfig) -> np.ndarray:
    """Classifier outputs (n, n_classes), float32: logits, or sigmoid probabilities for a
    multi-label dataset."""
    device = torch.device(config.device)
    outputs = []
    with torch_threads(config.threads):
        module.eval()
        for images in _batches(source, chunk(indices, config.batch_size * 2), config, device):
            x = backbone.preprocess(images, device)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device):
                out = module(x).float()
            outputs.append((out.sigmoid() if source.multilabels is not None else out).cpu().numpy())
    return np.concatenate(outputs)


def score(module: nn.Module, backbone, source: ImageSource, indices: np.ndarray,
          config: SweepConfig) -> float:
    """The dataset's metric (``source.metric``) of the fine-tuned ``module`` on ``indices``."""
    outputs = predict(module, backbone, source, indices, config)
    targets = source.multilabels[indices] if source.multilabels is not None else source.labels[indices]
    return evaluate(source.metric, outputs, targets)


def remove_checkpoint(path: Path):
    """Delete a finished job's checkpoint."""
    Path(path).unlink(missing_ok=True)
