"""What a stage declares (:class:`Stage`); :mod:`pedlib.pipeline` holds the graph and runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pandas as pd

from ..context import StudyContext

__all__ = ["Stage"]


@dataclass(frozen=True)
class Stage:
    """One stage of the graph.

    Attributes
    ----------
    name : str
    needs : tuple of str
        The stages whose results ``make`` takes (``inputs[name]``).
    make : callable
        ``make(study, inputs, **options)``: ``{name: DataFrame}`` for each of ``outputs``, or,
        for a stage without ``key``, its result.
    outputs : callable
        ``outputs(study) -> {name: path under results/<study>/}``: the tables the runner caches
        (empty: nothing to make for this study; the stage's result is None).
    key : callable, optional
        ``key(study, inputs) -> str``: what the outputs depend on besides the stage's code
        (which :func:`pedlib.pipeline.stage_key` adds). None: the stage caches its own files
        (one per item, with :mod:`pedlib.records`) and the runner calls it every time.
    key_needs : tuple of str, optional
        The needs ``key`` reads (default: all): the runner checks a stage's tables after those
        alone, and runs the other needs only when the tables are stale.
    check : callable, optional
        ``check(study)``: raises on a study this stage cannot run, before any stage does work.
    intact : callable, optional
        ``intact(study, tables) -> bool``: whether the files a fresh output lists are all still
        there (the figures).
    notebook : str
        The notebook that shows it.
    describes : str
        What it makes, in a few words (the graph's labels).
    """

    name: str
    needs: tuple[str, ...]
    make: Callable[..., Any]
    outputs: Callable[[StudyContext], Mapping[str, str]] = lambda study: {}
    key: Callable[[StudyContext, Mapping[str, Any]], str] | None = None
    intact: Callable[[StudyContext, Mapping[str, pd.DataFrame]], bool] | None = None
    check: Callable[[StudyContext], None] | None = None
    key_needs: tuple[str, ...] | None = None
    notebook: str = ""
    describes: str = ""

    @property
    def module(self) -> str:
        return self.make.__module__
