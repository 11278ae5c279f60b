"""The pipeline stages, one module each; every stage is a few functions of a
:class:`pedlib.study.Study` that return the DataFrame its notebook shows.

=================  ===============================================================  ==========
module             what it makes (under ``results/<study>/``)                       notebook
=================  ===============================================================  ==========
``ports``          the ported models checked against their original runtime          02
``extract``        features of every model on every target split and reference       01, 02
``groundtruth``    the linear probe, the fine-tuning table, published accuracies     01
``finetune``       the fine-tuning jobs (cell protocol or paper sweep)                01
``score``          every metric with and without PED, per (model, target) cell       03
``evaluate``       rank correlations of every method against every ground truth     04
``figures``        the plots and tables in ``figures/<study>/``                      05
=================  ===============================================================  ==========

Each stage module holds its own cache keys (what makes its results fresh) beside the code
that makes them; :func:`stage_keys` collects them without doing any work.
"""

from __future__ import annotations

from .._extras import require as _require

_require("torch", "pedlib.stages")

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..study import Study

__all__ = ["stage_keys"]


def stage_keys(study: "Study") -> dict[str, str]:
    """The content key of every result the stages would write, computed without doing any
    work: features, linear probe, port check, score cells and fine-tuning jobs (the
    evaluation and figures are keyed by the content of those results). A key depends on
    inputs, params and code only, never on the process (tested under two hash seeds)."""
    from . import extract, groundtruth, ports, score

    keys = {f"features/{m}/{d}-{part}": extract.key(study, m, d, part)
            for m, d, part in extract.feature_jobs(study)}
    keys["groundtruth/linear_probe"] = groundtruth.linear_probe_key(study)
    if ports.ported_models(study):
        keys["ports"] = ports.key(study)
    keys.update({f"scores/{m}/{d}": score.cell_key(study, m, d) for d in study.datasets for m in study.models})
    if study.params.groundtruth.finetune.enabled:
        finetuning = study.finetuning
        keys.update({f"finetune/{job.id}": finetuning.job_key(job) for job in finetuning.jobs()})
    return keys
