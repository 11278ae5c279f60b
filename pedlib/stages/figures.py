"""Stage: every plot and table of the study into ``figures/<study>/``, each with a caption,
and ``index.md`` listing them in the study's order, the headline first.

Each figure or table is one small function registered with :func:`figure`: it takes the
stage's inputs (:class:`Inputs`) and returns the :class:`Drawn` items it makes (a figure or a
table, with its file stem, its name in the index and its caption), none where it does not
apply. Adding a figure is adding one function (the plots themselves are :mod:`pedlib.plots`).
A function registered ``per="truth"`` runs once per ground truth, ``per="truth_pool"`` once
per ground truth and pool; consecutive functions of one kind share that loop, so the index
keeps the order in which they are registered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .. import ped as ped_module, records
from ..context import StudyContext
from ..groundtruth import label as truth_label
from ..plots import (PAPER_SETTING, latex_table, logme_definition_table, method_comparison_table, models_ranked,
                     ped_effect_forest, ped_effect_headline, ped_effect_limits, ped_effect_table, ped_trajectory,
                     runtime_bars, runtime_table, save_figure, save_table, score_scatter, sensitivity_heatmap,
                     trajectory_models, wtau_forest, wtau_table)
from ..plotstyle import dataset_label
from .declaration import Stage
from .feature_store import read, scoring_reference
from .groundtruth import by_truth

__all__ = ["STAGE", "Drawn", "Inputs", "REGISTRY", "figure", "figures", "figure_index", "HEADLINE"]

#: The name of the headline figure in :func:`figure_index`: PED's change of every metric's mean
#: weighted tau under each reference, every ground truth, all models, one column wide.
HEADLINE = "ped_effect_headline"


@dataclass
class Inputs:
    """What every figure function reads: the study and the tables of the stages before."""

    study: StudyContext
    scores: pd.DataFrame
    evaluation: pd.DataFrame
    accuracies: dict[str, pd.DataFrame]
    effect: pd.DataFrame
    paired: pd.DataFrame
    comparison: pd.DataFrame | None
    ports: pd.DataFrame | None

    @property
    def level(self) -> str:
        return f"{self.study.params.evaluation.level:.0%}"

    @property
    def ci(self) -> str:
        ev = self.study.params.evaluation
        return (f"{ev.level:.0%} percentile bootstrap intervals over models ({ev.bootstrap} resamples; for the "
                "mean over targets, models are resampled jointly across targets)")

    @property
    def first_truth(self) -> str:
        return next(iter(self.accuracies))


@dataclass
class Drawn:
    """One figure (``figure``: a matplotlib figure) or table (``table``: a DataFrame, written with
    :func:`pedlib.plots.save_table`'s ``options``) of the index."""

    stem: str
    name: str
    caption: str
    figure: object = None
    table: pd.DataFrame | None = None
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    function: Callable[..., Iterable[Drawn]]
    per: str | None


#: The registered figure functions, in the index's order.
REGISTRY: list[_Entry] = []


def figure(per: str | None = None):
    """Register a figure function: ``f(inputs)`` (``per="truth"``: ``f(inputs, truth, position)``;
    ``per="truth_pool"``: ``f(inputs, truth, pool, position)``) returning its :class:`Drawn` items."""
    if per not in (None, "truth", "truth_pool"):
        raise ValueError(f"per must be None, 'truth' or 'truth_pool', not {per!r}")

    def register(function):
        REGISTRY.append(_Entry(function, per))
        return function
    return register


def _draw_all(inputs: Inputs) -> Iterable[Drawn]:
    """Every registered function's items, consecutive functions of one ``per`` in one loop."""
    groups: list[tuple[str | None, list[_Entry]]] = []
    for entry in REGISTRY:
        if groups and groups[-1][0] == entry.per:
            groups[-1][1].append(entry)
        else:
            groups.append((entry.per, [entry]))
    for per, entries in groups:
        if per is None:
            calls = [()]
        elif per == "truth":
            calls = [(truth, position) for position, truth in enumerate(inputs.accuracies)]
        else:
            calls = [(truth, pool, position) for position, truth in enumerate(inputs.accuracies)
                     for pool in inputs.study.params.pools]
        for arguments in calls:
            for entry in entries:
                yield from entry.function(inputs, *arguments)


# ---------------------------------------------------------------------- the figures, in order
@figure()
def headline(inputs: Inputs) -> Iterable[Drawn]:
    paired, truths = inputs.paired, list(inputs.accuracies)
    yield Drawn(HEADLINE, HEADLINE,
                f"Does PED help? The change PED makes to each method's mean weighted tau over the targets "
                f"(all {int(paired.n_models.max())} models), against "
                f"{' and '.join(('the ' if t == 'linear_probe' else '') + truth_label(t) for t in truths)}, with "
                "each of PED's references (marker shapes); "
                f"lines: {inputs.level} paired bootstrap intervals over models (the same models drawn with and "
                "without PED, jointly across targets), thick where the interval excludes zero. Left of zero PED "
                "lowers the weighted tau. Methods whose score PED cannot change (TransRate, Dim.) are left out.",
                figure=ped_effect_headline(paired, truths))


@figure(per="truth")
def method_comparison(inputs: Inputs, truth: str, position: int) -> Iterable[Drawn]:
    between = method_comparison_table(inputs.paired, truth)
    if len(between):
        yield Drawn(f"method_comparison_{truth}", f"method_comparison_{truth}",
                    f"Paired comparisons between methods against {truth_label(truth)} (all models): the "
                    f"difference of mean weighted tau over the targets, as each row names it, with its "
                    f"{inputs.level} paired bootstrap interval (models drawn jointly for both methods and "
                    "across targets); an interval that includes zero does not order the two.", table=between)


def _subject(inputs: Inputs, truth: str, pool: str) -> tuple[int, str, str]:
    """(models ranked, the subject of a caption, the prefix of the names: none for the first
    ground truth's pool ``all``)."""
    n = models_ranked(inputs.evaluation, truth, pool)
    position = list(inputs.accuracies).index(truth)
    prefix = "" if position == 0 and pool == "all" else f"{truth}_{pool}_"
    return n, f"{n} models (pool `{pool}`) against {truth_label(truth)} accuracy", prefix


@figure(per="truth_pool")
def wtau_figure(inputs: Inputs, truth: str, pool: str, position: int) -> Iterable[Drawn]:
    n, subject, prefix = _subject(inputs, truth, pool)
    if n:
        yield Drawn(f"wtau_{truth}_{pool}", "wtau_figure" if not prefix else f"wtau_figure_{truth}_{pool}",
                    f"Does PED help? Weighted Kendall's tau of each method's ranking of {subject}: open "
                    "circles without PED, filled with PED, one panel per target and one for the mean over "
                    f"targets; lines: {inputs.ci}. Baselines (kNN, Dim.) below the dotted line. \"All scores "
                    "tied\": every model's score saturated at the metric's maximum, so there is no ranking, and "
                    "the mean leaves that target out (†: the number of targets it covers). Diamonds: some "
                    "scores saturated (tied at the maximum).",
                    figure=wtau_forest(inputs.evaluation, truth, pool, inputs.scores))


@figure(per="truth_pool")
def wtau(inputs: Inputs, truth: str, pool: str, position: int) -> Iterable[Drawn]:
    n, subject, _ = _subject(inputs, truth, pool)
    if not n:
        return
    evaluation, level = inputs.evaluation, inputs.level
    values = wtau_table(evaluation, truth, pool)
    yield Drawn(f"wtau_{truth}_{pool}", f"wtau_{truth}_{pool}",
                f"Weighted Kendall's tau of each method's ranking of {subject}, per target and "
                "the mean over targets; each metric without and with PED (`+ped`), baselines "
                f"(knn, dim) included; —: no ranking (every score tied, or too few models scored). "
                f"The LaTeX gives the {inputs.ci} (the CSV has the values; results/{inputs.study.params.study}/"
                "evaluation.csv the intervals); bold: the best per column where one method alone has it.",
                table=values,
                options=dict(missing="—", latex=latex_table(
                    values, wtau_table(evaluation, truth, pool, column="wtau_low"),
                    wtau_table(evaluation, truth, pool, column="wtau_high"), label=f"wtau_{truth}_{pool}",
                    caption=f"Weighted Kendall's tau of each method's ranking of {n} models (pool {pool}) against "
                            f"{truth_label(truth)} accuracy, per target and the mean over targets; each metric "
                            f"without and with PED (+ PED). Under each value: its {level} bootstrap interval over "
                            "models. Bold: the best of a column where one method alone has it.")))


@figure(per="truth_pool")
def ped_effect_figure(inputs: Inputs, truth: str, pool: str, position: int) -> Iterable[Drawn]:
    n, subject, _ = _subject(inputs, truth, pool)
    if n and not ped_effect_table(inputs.effect, truth, pool).empty:
        yield Drawn(f"ped_effect_{truth}_{pool}", f"ped_effect_figure_{truth}_{pool}",
                    f"What PED changes: weighted tau with PED minus without, per metric and target, "
                    f"for {subject}. Lines: {inputs.level} paired bootstrap intervals over models (the same "
                    "models drawn for both rankings; for the mean, jointly across targets), thick where the "
                    "interval excludes zero. The target panels share one axis and the mean panel has its own, "
                    "zoomed to its smaller intervals; every PED-effect figure of the study has these axes. "
                    "\"All scores tied\": no ranking with or without PED.",
                    figure=ped_effect_forest(inputs.effect, truth, pool, ped_effect_limits(inputs.effect)))


@figure(per="truth_pool")
def ped_effect(inputs: Inputs, truth: str, pool: str, position: int) -> Iterable[Drawn]:
    n, subject, _ = _subject(inputs, truth, pool)
    delta = ped_effect_table(inputs.effect, truth, pool)
    if not n or delta.empty:
        return
    yield Drawn(f"ped_effect_{truth}_{pool}", f"ped_effect_{truth}_{pool}",
                f"Weighted tau with PED minus without (the figure above's numbers), per metric and "
                f"target, {subject}; —: no ranking with or without PED. The LaTeX gives the "
                f"{inputs.level} paired bootstrap intervals (the CSV has the values; "
                f"results/{inputs.study.params.study}/ped_effect.csv the intervals); bold: the largest gain "
                "per column where one metric alone has it.", table=delta,
                options=dict(missing="—", latex=latex_table(
                    delta, ped_effect_table(inputs.effect, truth, pool, "delta_low"),
                    ped_effect_table(inputs.effect, truth, pool, "delta_high"), label=f"ped_effect_{truth}_{pool}",
                    caption=f"What PED changes: weighted tau with PED minus without against {truth_label(truth)} "
                            f"accuracy, {n} models (pool {pool}), per metric and target and the mean over targets. "
                            f"Under each value: its {inputs.level} paired bootstrap interval over models. Bold: "
                            "the largest gain of a column where one metric alone has it.")))


@figure(per="truth")
def reference_ablation(inputs: Inputs, truth: str, position: int) -> Iterable[Drawn]:
    variants = ["plain", "ped"] + [f"ped:ref={m}" for m in inputs.study.params.reference.ablation]
    ablation = wtau_table(inputs.evaluation, truth, "all", variants=variants)
    if not ablation.empty:
        yield Drawn(f"reference_ablation_{truth}", f"reference_ablation_{truth}",
                    f"PED's reference sample, weighted tau against {truth_label(truth)} (all models): without "
                    "PED, PED with the study's reference (`+ped`: the model's source data where the study has "
                    "it), the other targets pooled (`ref=others`), the target itself (`ref=none`).", table=ablation)


@figure(per="truth")
def logme_definition(inputs: Inputs, truth: str, position: int) -> Iterable[Drawn]:
    definition = logme_definition_table(inputs.evaluation, inputs.scores, truth)
    if not definition.empty:
        yield Drawn(f"logme_definition_{truth}", f"logme_definition_{truth}",
                    f"Does LogME's definition matter? Weighted tau against {truth_label(truth)} (all models) of "
                    "`logme` (log-determinant over all D eigenvalues) and of the reference code's "
                    "`logme_reference` (which, when N <= D, sums over the N singular values of the "
                    "features and leaves out D - N eigenvalues), their difference, and "
                    "Kendall's tau between the two scores' rankings of the models.", table=definition)


@figure(per="truth")
def groundtruth(inputs: Inputs, truth: str, position: int) -> Iterable[Drawn]:
    accuracy = inputs.accuracies[truth].pivot_table(index="model", columns="dataset", values="accuracy", sort=False)
    yield Drawn(f"groundtruth_{truth}", f"groundtruth_{truth}",
                f"The {truth_label(truth)} accuracy of every model on every target"
                + (" (mean over seeds; the CSV of results/ has each seed)." if truth == "finetune" else "."),
                table=accuracy)


@figure()
def scatter(inputs: Inputs) -> Iterable[Drawn]:
    name = truth_label(inputs.first_truth)
    for metric in dict.fromkeys(inputs.scores.metric):
        if metric in ("logme", "sfda"):
            yield Drawn(f"scatter_{metric}", f"scatter_{metric}",
                        f"{metric} score (x) against {name} accuracy (y), one point per model; one row "
                        "per target, without PED (left, open circles) and with PED (right, filled). Star: the "
                        "top-scored model, where one model alone has the top score (a tie stars none); ring: "
                        "the most accurate; both named under the panel. Crosses: scores saturated at the "
                        "metric's maximum (tied).",
                        figure=score_scatter(inputs.scores, inputs.accuracies[inputs.first_truth], metric, name))


@figure()
def sensitivity(inputs: Inputs) -> Iterable[Drawn]:
    chosen = inputs.study.params.sensitivity
    for metric in chosen.metrics if chosen is not None else ():
        yield Drawn(f"sensitivity_{metric}", f"sensitivity_{metric}",
                    f"Mean weighted tau over targets (against {truth_label(inputs.first_truth)}, all models) of "
                    f"{metric} + PED for each nsigma (rows) and time_step (columns); outlined: the paper's setting "
                    f"(nsigma {PAPER_SETTING[0]}, time_step {PAPER_SETTING[1]}). The title gives the mean "
                    "weighted tau without PED.",
                    figure=sensitivity_heatmap(inputs.evaluation, inputs.scores, metric, inputs.first_truth))


@figure()
def trajectories(inputs: Inputs) -> Iterable[Drawn]:
    study, first = inputs.study, truth_label(inputs.first_truth)
    chosen = trajectory_models(inputs.accuracies[inputs.first_truth], study.models, study.datasets)
    if chosen is None:
        return
    target, worst, best, n_ranked = chosen
    for label, model in (("best", best), ("worst", worst)):
        train = read(study, model, target, "train")
        x = train["features"].astype(np.float64)
        reference = scoring_reference(study, model, target, study.params.reference.mode)
        result = ped_module.decline(x, train["labels"], reference, **{**ped_module.DEFAULTS, **study.params.ped})
        classes = study.source(target).classes
        yield Drawn(f"trajectory_{target}_{label}", f"trajectory_{label}",
                    f"PED on {dataset_label(target)} for {model}, the {label} of {n_ranked} models by {first}: "
                    "its classes' train features before (left) and after PED (middle) in the 2-D PCA plane of "
                    "the standardised features, every point shown (a point beyond the axes sits on their edge "
                    "as an open marker, counted under the panel; one colour-blind-safe colour and marker "
                    "per class); large markers: the class means; arrows: each class mean's displacement "
                    "under PED, to scale (middle), and zoomed to the means (right; open: before PED).",
                    figure=ped_trajectory(result, x, train["labels"], reference,
                                          class_names=[classes[c] for c in result.classes],
                                          title=f"PED on {dataset_label(target)}: {model}, the {label} of "
                                                f"{n_ranked} models by {first}"))


@figure()
def paper_comparison(inputs: Inputs) -> Iterable[Drawn]:
    if inputs.comparison is None:
        return
    for column in ("ours", "paper", "difference"):
        wide = inputs.comparison.pivot_table(index="method", columns="dataset", values=column, sort=False)
        yield Drawn(f"paper_comparison_{column}", f"paper_comparison_{column}",
                    f"Weighted tau against the published accuracies: {column} "
                    "(ours, the paper's, ours minus the paper's), per method and dataset.", table=wide)


@figure()
def ports(inputs: Inputs) -> Iterable[Drawn]:
    if inputs.ports is None:
        return
    table = inputs.ports.set_index("model").drop(columns=["quantized", "seconds"], errors="ignore")
    yield Drawn("ports", "ports",
                "Each float PyTorch port against its original runtime (TFLite) on the same images: "
                "median and minimum cosine similarity of the pooled features, top-1 agreement of "
                "the source classifier (empty: no classifier). Each check's seconds: "
                f"{inputs.study.output.name}/ports.csv under results/.", table=table,
                options=dict(digits=4, missing=""))


# ---------------------------------------------------------------------- the stage
def _inputs(study: StudyContext, inputs) -> Inputs:
    tables = inputs["evaluate"]
    return Inputs(study, scores=inputs["score"]["scores"], evaluation=tables["evaluation"],
                  accuracies=by_truth(inputs["groundtruth"]["accuracies"]), effect=tables["ped_effect"],
                  paired=tables["paired_differences"], comparison=tables.get("paper_comparison"),
                  ports=(inputs["ports"] or {}).get("ports"))


def _key(study: StudyContext, inputs) -> str:
    """What the figures depend on besides their code: every input table without its timings,
    the params and the environment (the plotting libraries decide the figures' bytes).

    Timings (the scores' and the ports' seconds) vary from run to run: they are kept out of the
    key and out of figures/ (the runtime figure goes to results/<study>/timing/), so a rerun that
    reproduces the numbers rewrites nothing there."""
    given = _inputs(study, inputs)
    return records.content_key("figures", _untimed_key(given.scores), records.content_key(given.evaluation.to_csv()),
                               records.content_key(given.effect.to_csv()), records.content_key(given.paired.to_csv()),
                               {n: records.content_key(t.to_csv()) for n, t in given.accuracies.items()},
                               None if given.comparison is None else records.content_key(given.comparison.to_csv()),
                               None if given.ports is None else _untimed_key(given.ports),
                               study.params.as_dict(), records.environment_key())


def figures(study: StudyContext, inputs) -> dict[str, pd.DataFrame]:
    """Write every registered figure (in each of ``params.plots.formats``) and table (Markdown,
    CSV and, for the headline tables, LaTeX) with a caption each, ``index.md`` listing them and the
    runtime figure and table (``results/<study>/timing/``); returns ``{"figures": table}`` of
    name, path (from the study's root folder) and caption, the files of the index first.

    What keeps the figures fresh lives under results/ (the runner's record of this table);
    figures/index.md's record describes the files and changes only with them. A fresh clone has
    no results/ and so regenerates every figure."""
    given = _inputs(study, inputs)
    out, plots, timing = study.figures_dir, study.params.plots, study.output / "timing"
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, tuple[list[Path], str]] = {}
    for item in _draw_all(given):
        if item.figure is not None:
            save_figure(item.figure, out / item.stem, written, item.name, item.caption, formats=plots.formats,
                        dpi=plots.dpi)
        else:
            save_table(item.table, out / item.stem, written, item.name, item.caption, **item.options)
    _write_index(study, out, written)
    timed: dict[str, tuple[list[Path], str]] = {}
    save_figure(runtime_bars(given.scores), timing / "runtime", timed, "runtime",
                "Median seconds per score of one (model, target), log scale. Without PED: the metric on the "
                "features (the cell's first metric also carries the class statistics every metric shares, "
                "computed once); with PED: the metric on the moved features plus PED's motion, which each "
                "metric's time counts in full (PED runs once per cell and setting). Feature extraction is "
                "not included. Timing: varies from run to run.", formats=plots.formats, dpi=plots.dpi)
    save_table(runtime_table(given.scores), timing / "runtime", timed, "runtime_table",
               "The runtime figure's numbers (median seconds). Timing: varies from run to run.", digits=4)
    root = Path(study.params.root)
    rows = [dict(name=name, path=os.path.relpath(path, root), caption=caption)
            for name, (paths, caption) in {**written, **timed}.items() for path in _viewable_first(paths)]
    return {"figures": pd.DataFrame(rows, columns=["name", "path", "caption"])}


def _intact(study: StudyContext, tables) -> bool:
    """Every file the figures table lists is there (a deleted figure is drawn again)."""
    root = Path(study.params.root)
    return all((root / path).is_file() for path in tables["figures"].path) and bool(records.read_record(
        study.figures_dir / "index.md"))


def _untimed_key(table: pd.DataFrame) -> str:
    """The content key of a table without its timing column."""
    return records.content_key(table.drop(columns=["seconds"], errors="ignore").to_csv())


def _viewable_first(paths: list[Path]) -> list[Path]:
    """The file a notebook or a Markdown viewer shows (PNG, Markdown) first, then the others."""
    return sorted(paths, key=lambda p: p.suffix not in (".png", ".md"))


def _write_index(study: StudyContext, out: Path, written: dict) -> None:
    def entry(paths: list[Path], caption: str) -> str:
        first, *others = paths
        also = " (" + ", ".join(f"[{p.suffix[1:].upper()}]({p.name})" for p in others) + ")" if others else ""
        return f"- [{first.name}]({first.name}){also}: {caption}"

    lines = "\n".join(entry(_viewable_first(paths), caption) for paths, caption in written.values())
    text = f"# Figures and tables of the {study.params.study} study\n\n{lines}\n"
    files = {p.name: records.payload_digest(p)["sha256"] for paths, _ in written.values() for p in paths}
    previous = records.read_record(out / "index.md")
    if previous and previous.get("files") == files and (out / "index.md").is_file() \
            and (out / "index.md").read_text() == text:
        return  # the same files: the record (the commit, time and environment that made them) stays
    records.atomic_write(out / "index.md", lambda tmp: tmp.write_text(text))
    records.write_record(out / "index.md", records.content_key(files), params=study.params.as_dict(),
                         seed=study.params.seed,
                         inputs={k: {"files": [p.name for p in _viewable_first(paths)], "caption": caption}
                                 for k, (paths, caption) in written.items()}, extra={"files": files})


def figure_index(study: StudyContext) -> pd.DataFrame:
    """The figures and tables :func:`figures` wrote, in the study's order: name, file (the
    viewable one: PNG or Markdown), files (every format), caption."""
    record = records.read_record(study.figures_dir / "index.md") or {}
    return pd.DataFrame([dict(name=name, file=entry["files"][0], files=entry["files"], caption=entry["caption"])
                         for name, entry in (record.get("inputs") or {}).items()],
                        columns=["name", "file", "files", "caption"])


STAGE = Stage("figures", needs=("ports", "extract", "groundtruth", "score", "evaluate"), make=figures, key=_key,
              outputs=lambda study: {"figures": "figures.csv"}, intact=_intact, notebook="05",
              key_needs=("ports", "groundtruth", "score", "evaluate"),
              describes="the plots and tables of figures/<study>/")
