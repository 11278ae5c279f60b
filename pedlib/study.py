"""A study: its context (:class:`pedlib.context.StudyContext`) with one method per stage.

>>> study = Study.load("pocket")      # validated before any work
>>> study.groundtruth()   # 01: linear probe (+ fine-tuning table)
>>> study.extract()       # 02: features of every model on every target split + references
>>> study.score()         # 03: every metric, with and without PED
>>> study.evaluate()      # 04: rank correlations against each ground truth
>>> study.figures()       # 05: plots and tables in figures/<study>/

Each method runs its stage through :func:`pedlib.pipeline.run`, which first runs every stage
it needs that is stale (so ``study.figures()`` alone makes everything) and returns what the
notebook shows. Every stage writes its results under ``results/<study>/`` with a provenance
record and skips work whose record matches, so a rerun takes seconds and an interrupted run
resumes.
"""

from __future__ import annotations

from ._extras import require as _require

_require("torch", "pedlib.study")

from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from . import pipeline
from .context import StudyContext, find_params
from .stages import extract as extract_stage, feature_store
from .stages.finetune import Finetuning, finetuning
from .stages.groundtruth import by_truth

__all__ = ["Study", "find_params"]


class Study(StudyContext):
    """A study's context (params, data, models, worker processes: :class:`StudyContext`) and
    its stages, one method each (see the module docstring)."""

    def groundtruth(self, *, recompute_finetune: bool = False) -> dict[str, pd.DataFrame]:
        """Stage 01: each ground truth's own table, in ``evaluation.groundtruth``'s order
        (:func:`pedlib.stages.groundtruth.tables`)."""
        from .stages.groundtruth import tables

        results: dict = {}
        if recompute_finetune:
            pipeline.run(self, "finetune", results=results, recompute=True)
        pipeline.run(self, "groundtruth", results=results)
        return tables(self, results)

    def accuracies(self) -> dict[str, pd.DataFrame]:
        """Each ground truth as one accuracy per (model, dataset) (the ``groundtruth`` stage)."""
        return by_truth(pipeline.run(self, "groundtruth")["accuracies"])

    def check_ports(self) -> pd.DataFrame | None:
        """The ports against their original runtime (the ``ports`` stage; None without ports)."""
        checked = pipeline.run(self, "ports")
        return None if checked is None else checked["ports"]

    def extract(self, parts: tuple[str, ...] | None = None) -> pd.DataFrame:
        """Stage 02 (:func:`pedlib.stages.extract.extract`; ``parts``: only these parts)."""
        return pipeline.run(self, "extract", parts=parts)

    def features(self, model: str, dataset: str, part: str) -> dict:
        """One feature set (``part``: train, test, or reference: the dataset's own seeded sample
        of PED reference images), extracted now if it is not cached
        (:func:`pedlib.stages.extract.features`)."""
        with self.locked():
            return extract_stage.features(self, model, dataset, part)

    def reference(self, model: str, target: str, mode: str | None = None) -> np.ndarray | None:
        """The reference features PED scores ``model`` on ``target`` with, as the score stage
        does (:func:`pedlib.stages.feature_store.scoring_reference`; ``mode``: the study's
        ``reference.mode`` unless given). Extracts what it needs first."""
        pipeline.run(self, "extract")
        return feature_store.scoring_reference(self, model, target, mode or self.params.reference.mode)

    def score(self) -> pd.DataFrame:
        """Stage 03 (:func:`pedlib.stages.score.score`)."""
        return pipeline.run(self, "score")["scores"]

    def evaluate(self) -> pd.DataFrame:
        """Stage 04 (:func:`pedlib.stages.evaluate.evaluate`): the evaluation table (the
        stage's other tables: :meth:`evaluation_tables`)."""
        return pipeline.run(self, "evaluate")["evaluation"]

    def evaluation_tables(self) -> dict[str, pd.DataFrame]:
        """Every table of stage 04: evaluation, ped_effect, paired_differences (and
        paper_comparison for a paper study)."""
        return pipeline.run(self, "evaluate")

    def figures(self) -> dict[str, Path]:
        """Stage 05 (:func:`pedlib.stages.figures.figures`): name -> the viewable file of each
        figure and table (PNG or Markdown), the runtime figure and table included."""
        table = pipeline.run(self, "figures")["figures"].drop_duplicates("name")
        return {row.name: Path(self.params.root) / row.path for row in table.itertuples()}

    @cached_property
    def finetuning(self) -> Finetuning:
        """The fine-tuning jobs (:class:`pedlib.stages.finetune.Finetuning`)."""
        return finetuning(self)

    def stage_keys(self) -> dict[str, str]:
        """The key of every result the stages would write (:func:`pedlib.pipeline.keys`)."""
        return pipeline.keys(self)
