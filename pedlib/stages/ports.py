"""Stage: every ported model of the study against its original runtime
(:mod:`pedlib.models.port_check`), cached with its inputs in ``results/<study>/ports.csv``."""

from __future__ import annotations

import os
import warnings
import numpy as np
import pandas as pd

from .. import assets, records
from ..context import StudyContext
from ..models.port_check import MIN_TOP1
from ..progress import notice
from .declaration import Stage

__all__ = ["PORT_TARGETS", "STAGE", "check", "check_one", "ported_models", "key"]

#: The targets the ports' agreement check draws its images from (the pocket targets).
PORT_TARGETS = ("flowers12", "cifar10", "mnist5k", "digits", "lfw")

def ported_models(study: StudyContext) -> list[str]:
    """The study's models that are ports (none with ``ports: null``)."""
    from ..models.ports import PORTS

    return [m for m in study.models if m in PORTS] if study.params.ports is not None else []


def image_indices(study: StudyContext) -> dict[str, np.ndarray]:
    """A seeded sample of ``ports.images`` images spread evenly over the pocket targets."""
    total = study.params.ports.images
    sizes = [total // len(PORT_TARGETS) + (i < total % len(PORT_TARGETS)) for i in range(len(PORT_TARGETS))]
    rng = np.random.default_rng([study.params.seed, 256])
    chosen = {}
    for target, size in zip(PORT_TARGETS, sizes):
        n = len(study.source(target))
        chosen[target] = np.sort(rng.choice(n, size=min(size, n), replace=False))
    return chosen


def key(study: StudyContext) -> str:
    """What the check's table depends on besides its code: both files of every port, the images."""
    from ..models.ports import PORTS

    manifest = assets.manifest()
    return records.content_key(
        "ports", [(m, manifest[PORTS[m].source].sha256, manifest[PORTS[m].reference].sha256)
                  for m in ported_models(study)],
        {t: (study.source(t).content_id, i.tolist()) for t, i in image_indices(study).items()})


def check(study: StudyContext, inputs=None) -> dict[str, pd.DataFrame] | None:
    """Each ported model of the study against its original runtime on ``ports.images``
    images of the pocket targets (``{"ports": table}``; the runner caches it). Raises
    :class:`~pedlib.models.ports.PortMismatch` for a port that fails its bar. None when the
    study has no ported model or ``ports: null``. The models are checked in the study's worker
    processes, the largest first.

    The check runs before the study's extraction, so before checking it opens every dataset
    of the study: a missing folder or file is reported at once, not after the ports' half
    minute."""
    names = ported_models(study)
    if not names:
        return None
    for dataset in study.datasets:
        study.source(dataset)
    order = sorted(names, key=lambda name: -study.spec(name).input_size)
    checked = dict(zip(order, study.map(check_one, [(name,) for name in order], desc="port check",
                                        unit="models")))
    table = pd.DataFrame([checked[name][0] for name in names])
    messages = [m for name in names for m in checked[name][1]]
    below = table[table.note.astype(bool)] if "note" in table else table.iloc[:0]
    if len(below):
        lowest = below.loc[below.top1_agreement.idxmin()]
        messages.append(f"ports: {len(below)} of {len(table)} agree with their quantized originals on fewer than "
                        f"{MIN_TOP1:.0%} of top-1 predictions (lowest {lowest.top1_agreement:.3f}, {lowest.model}) "
                        "while their features agree: quantization moves near-tied logits, the ports are "
                        f"right (docs/study.md, \"The ports' check\"; {os.path.relpath(study.figures_dir, study.params.root)}/ports.md)")
    for message in messages:  # shown in the notebook and, as one line each, in the terminal
        warnings.warn(message, UserWarning, stacklevel=2)
        notice(message)
    return {"ports": table}


def check_one(study: StudyContext, name: str) -> tuple[dict, list[str]]:
    """One port's row of the check and the warnings it gave (raises
    :class:`~pedlib.models.ports.PortMismatch` where it fails); runs in a worker process, on
    ``extract.threads`` threads as extraction does."""
    from ..models.port_check import assess, check_port, resize_for

    batch = np.concatenate([resize_for(name, study.source(t).load(i)) for t, i in image_indices(study).items()])
    with warnings.catch_warnings(record=True) as caught, study.extraction_threads():
        warnings.simplefilter("always", UserWarning)
        row = assess(check_port(name, batch, mirror=study.mirror), mirror=study.mirror)
    return row, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


STAGE = Stage("ports", needs=(), make=check, key=lambda study, inputs: key(study), key_needs=(),
              outputs=lambda study: {"ports": "ports.csv"} if ported_models(study) else {},
              notebook="02", describes="the ported models against their original runtime")
