"""The PED settings a study scores (main, reference ablation, sensitivity grid) and the
datasets each setting's reference samples come from; the extract stage needs them to know
which reference features to make, the score stage to use them."""

from __future__ import annotations

from .. import ped
from ..context import REFERENCE_IMAGES, StudyContext

__all__ = ["variants", "reference_sets"]


def variants(study: StudyContext) -> list[tuple[str, str, dict]]:
    """(variant, reference mode, PED options) of every PED setting the study scores."""
    base = {**ped.DEFAULTS, **study.params.ped}
    ref = study.params.reference
    out = [("ped", ref.mode, base)]
    out += [(f"ped:ref={mode}", mode, base) for mode in ref.ablation if mode != ref.mode]
    if study.params.sensitivity is not None:
        for nsigma in study.params.sensitivity.nsigma:
            for step in study.params.sensitivity.time_step:
                if (nsigma, step) != (base["nsigma"], base["time_step"]):
                    out.append((f"ped:nsigma={nsigma:g},time_step={step:g}", ref.mode,
                                {**base, "nsigma": nsigma, "time_step": step}))
    return out


def reference_sets(study: StudyContext, model: str, target: str, mode: str) -> list[str]:
    """The datasets whose reference samples make up PED's reference for ``model`` on
    ``target`` (see ``ReferenceParams``): the model's pretraining data in ``source`` mode
    when the study has it, else every other target; ``reference.images`` in every mode but
    ``none``."""
    if study.params.reference.images:
        return [] if mode == "none" else [REFERENCE_IMAGES]
    source = study.source_dataset(model)
    if mode == "source" and source is not None and source != target:
        return [source]
    return [d for d in study.datasets if d != target]
