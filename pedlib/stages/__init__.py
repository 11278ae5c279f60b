"""The pipeline stages, one module each; every stage declares itself (``STAGE``, a
:class:`~pedlib.stages.declaration.Stage`: its needs, its outputs and the function that makes
them from a :class:`~pedlib.context.StudyContext`), and :mod:`pedlib.pipeline` runs them.

================  ===============================================================  ==========
stage             what it makes (under ``results/<study>/``)                       notebook
================  ===============================================================  ==========
``ports``         the ported models checked against their original runtime          02
``extract``       features of every model on every target split and reference       02
``linear_probe``  the linear-probe ground truth                                     01
``finetune``      the fine-tuning ground truth, as jobs (cell protocol or sweep)     01
``groundtruth``   every ground truth as one accuracy per (model, target)            01
``score``         every metric with and without PED, per (model, target) cell       03
``evaluate``      rank correlations of every method against every ground truth     04
``figures``       the plots and tables in ``figures/<study>/``                      05
================  ===============================================================  ==========

Helpers the stages share (not stages): :mod:`~pedlib.stages.feature_store` (the feature files'
paths, keys and reading, PED's reference features), :mod:`~pedlib.stages.variants` (the PED
settings a study scores) and :mod:`~pedlib.stages.declaration`.
"""

from __future__ import annotations

from .._extras import require as _require

_require("torch", "pedlib.stages")
