"""Stage: every plot and table of the study into ``figures/<study>/``, each with a caption,
and ``index.md`` listing them in the study's order, the headline first (the plots themselves
are :mod:`pedlib.plots`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import ped as ped_module, records
from ..groundtruth import label as truth_label
from ..plots import (PAPER_SETTING, latex_table, logme_definition_table, method_comparison_table, models_ranked,
                     ped_effect_forest, ped_effect_headline, ped_effect_table, ped_trajectory, runtime_bars,
                     runtime_table, save_figure, save_table, score_scatter, sensitivity_heatmap, trajectory_models,
                     wtau_forest, wtau_table)
from . import groundtruth
from .evaluate import paired_differences, ped_effect
from .score import scoring_reference

if TYPE_CHECKING:
    from ..study import Study

__all__ = ["figures", "figure_index", "HEADLINE"]

#: The name of the headline figure in :func:`figure_index`: PED's change of every metric's mean
#: weighted tau under each reference, every ground truth, all models, one column wide.
HEADLINE = "ped_effect_headline"


def figures(study: "Study") -> dict[str, Path]:
    """Write every figure (in each of ``params.plots.formats``) and table (Markdown, CSV and,
    for the headline tables, LaTeX) of ``study`` with a caption each, and ``index.md`` listing
    them; returns name -> path of the first file of each (:func:`figure_index` gives them all
    with their captions)."""
    out = study.figures_dir
    out.mkdir(parents=True, exist_ok=True)
    scores = records.read_csv(study.output / "scores.csv")
    evaluation = records.read_csv(study.output / "evaluation.csv")
    accuracies = groundtruth.accuracies(study)
    effect = ped_effect(study, scores, accuracies)
    paired = paired_differences(study, scores, accuracies)
    comparison = study.output / "paper_comparison.csv"
    ports = study.output / "ports.csv"
    plots = study.params.plots
    # Timings (the scores' and the ports' seconds) vary from run to run: they are kept out of the
    # key and out of figures/ (the runtime figure goes to results/<study>/timing/), so a rerun
    # that reproduces the numbers rewrites nothing there. The environment is in the key: the
    # plotting libraries decide the figures' bytes.
    timing = study.output / "timing"
    key = records.content_key("figures", _untimed_key(scores), records.content_key(evaluation.to_csv()),
                              records.content_key(effect.to_csv()), records.content_key(paired.to_csv()),
                              {n: records.content_key(t.to_csv()) for n, t in accuracies.items()},
                              comparison.read_text() if comparison.exists() else None,
                              _untimed_key(records.read_csv(ports)) if ports.exists() else None,
                              study.params.as_dict(), records.environment_key(),
                              records.code_version("plots", "plotstyle", "stages.figures"))
    # What keeps the figures fresh lives under results/ (made: this machine's record of the
    # key); figures/index.md's record describes the files and changes only with them. A fresh
    # clone has no results/ and so regenerates every figure.
    made = study.output / "figures.json"
    runtime_files = [timing / f"runtime.{suffix}" for suffix in (*plots.formats, "md", "csv")]
    if records.is_fresh(made, key) and records.read_record(out / "index.md") and \
            all(p.exists() for p in runtime_files):
        listed = records.read_record(out / "index.md")["inputs"]
        if all((out / name).exists() for entry in listed.values() for name in entry["files"]):
            return {**{label: out / entry["files"][0] for label, entry in listed.items()},
                    "runtime": _viewable_first([timing / f"runtime.{f}" for f in plots.formats])[0],
                    "runtime_table": timing / "runtime.md"}
    written: dict[str, tuple[list[Path], str]] = {}
    ev = study.params.evaluation
    ci = (f"{ev.level:.0%} percentile bootstrap intervals over models ({ev.bootstrap} resamples; for the "
          "mean over targets, models are resampled jointly across targets)")

    def figure(fig, stem: str, name: str, caption: str) -> None:
        save_figure(fig, out / stem, written, name, caption, formats=plots.formats, dpi=plots.dpi)

    truths = list(accuracies)
    figure(ped_effect_headline(paired, truths), "ped_effect_headline", HEADLINE,
           f"Does PED help? The change PED makes to each method's mean weighted tau over the targets "
           f"(all {int(paired.n_models.max())} models), against "
           f"{' and '.join(('the ' if t == 'linear_probe' else '') + truth_label(t) for t in truths)}, with each of "
           "PED's references (marker shapes); "
           f"lines: {ev.level:.0%} paired bootstrap intervals over models (the same models drawn with and "
           "without PED, jointly across targets), thick where the interval excludes zero. Left of zero PED "
           "lowers the weighted tau. Methods whose score PED cannot change (TransRate, Dim.) are left out.")
    for truth in truths:
        between = method_comparison_table(paired, truth)
        if len(between):
            save_table(between, out / f"method_comparison_{truth}", written, f"method_comparison_{truth}",
                       f"Paired comparisons between methods against {truth_label(truth)} (all models): the "
                       f"difference of mean weighted tau over the targets, as each row names it, with its "
                       f"{ev.level:.0%} paired bootstrap interval (models drawn jointly for both methods and "
                       "across targets); an interval that includes zero does not order the two.")
    for position, truth in enumerate(accuracies):
        name = truth_label(truth)
        for pool in study.params.pools:
            n = models_ranked(evaluation, truth, pool)
            if not n:
                continue
            prefix = "" if position == 0 and pool == "all" else f"{truth}_{pool}_"
            subject = f"{n} models (pool `{pool}`) against {name} accuracy"
            figure(wtau_forest(evaluation, truth, pool, scores), f"wtau_{truth}_{pool}",
                   "wtau_figure" if not prefix else f"wtau_figure_{truth}_{pool}",
                   f"Does PED help? Weighted Kendall's tau of each method's ranking of {subject}: open "
                   "circles without PED, filled with PED, one panel per target and one for the mean over "
                   f"targets; lines: {ci}. Baselines (kNN, Dim.) below the dotted line. \"All scores tied\": "
                   "every model's score saturated at the metric's maximum, so there is no ranking, and "
                   "the mean leaves that target out (†: the number of targets it covers). Diamonds: some "
                   "scores saturated (tied at the maximum).")
            values = wtau_table(evaluation, truth, pool)
            save_table(values, out / f"wtau_{truth}_{pool}", written, f"wtau_{truth}_{pool}",
                       f"Weighted Kendall's tau of each method's ranking of {subject}, per target and "
                       "the mean over targets; each metric without and with PED (`+ped`), baselines "
                       f"(knn, dim) included; —: no ranking (every score tied, or too few models scored). "
                       f"The LaTeX gives the {ci} (the CSV has the values; results/{study.params.study}/"
                       "evaluation.csv the intervals); bold: the best per column.", missing="—",
                       latex=latex_table(values, wtau_table(evaluation, truth, pool, column="wtau_low"),
                                         wtau_table(evaluation, truth, pool, column="wtau_high"),
                                         caption=f"Weighted tau vs {name}, {n} models (pool {pool}); "
                                                 f"[{ev.level:.0%} bootstrap CI]; bold: best per column."))
            delta = ped_effect_table(effect, truth, pool)
            if delta.empty:
                continue
            figure(ped_effect_forest(effect, truth, pool), f"ped_effect_{truth}_{pool}",
                   f"ped_effect_figure_{truth}_{pool}",
                   f"What PED changes: weighted tau with PED minus without, per metric and target, "
                   f"for {subject}. Lines: {ev.level:.0%} paired bootstrap intervals over models (the same "
                   "models drawn for both rankings; for the mean, jointly across targets); filled where "
                   "the interval excludes zero. \"All scores tied\": no ranking with or without PED.")
            save_table(delta, out / f"ped_effect_{truth}_{pool}", written, f"ped_effect_{truth}_{pool}",
                       f"Weighted tau with PED minus without (the figure above's numbers), per metric and "
                       f"target, {subject}; —: no ranking with or without PED. The LaTeX gives the "
                       f"{ev.level:.0%} paired bootstrap intervals (the CSV has the values; "
                       f"results/{study.params.study}/ped_effect.csv the intervals); bold: the largest gain "
                       "per column.", missing="—",
                       latex=latex_table(delta, ped_effect_table(effect, truth, pool, "delta_low"),
                                         ped_effect_table(effect, truth, pool, "delta_high"),
                                         caption=f"Weighted tau with PED minus without, vs {name}, {n} models "
                                                 f"(pool {pool}); [{ev.level:.0%} paired bootstrap CI]."))
    for truth in accuracies:
        name = truth_label(truth)
        variants = ["plain", "ped"] + [f"ped:ref={m}" for m in study.params.reference.ablation]
        ablation = wtau_table(evaluation, truth, "all", variants=variants)
        if not ablation.empty:
            save_table(ablation, out / f"reference_ablation_{truth}", written, f"reference_ablation_{truth}",
                       f"PED's reference sample, weighted tau against {name} (all models): without PED, "
                       "PED with the study's reference (`+ped`: the model's source data where the study has "
                       "it), the other targets pooled (`ref=others`), the target itself (`ref=none`).")
        definition = logme_definition_table(evaluation, scores, truth)
        if not definition.empty:
            save_table(definition, out / f"logme_definition_{truth}", written, f"logme_definition_{truth}",
                       f"Does LogME's definition matter? Weighted tau against {name} (all models) of "
                       "`logme` (log-determinant over all D eigenvalues) and of the reference code's "
                       "`logme_reference` (which, when N <= D, sums over the N singular values of the "
                       "features and leaves out D - N eigenvalues), their difference, and "
                       "Kendall's tau between the two scores' rankings of the models.")
        accuracy = accuracies[truth].pivot_table(index="model", columns="dataset", values="accuracy", sort=False)
        save_table(accuracy, out / f"groundtruth_{truth}", written, f"groundtruth_{truth}",
                   f"The {name} accuracy of every model on every target"
                   + (" (mean over seeds; the CSV of results/ has each seed)." if truth == "finetune" else "."))
    first_truth = next(iter(accuracies))
    first_name = truth_label(first_truth)
    for metric in dict.fromkeys(scores.metric):
        if metric in ("logme", "sfda"):
            figure(score_scatter(scores, accuracies[first_truth], metric, first_name), f"scatter_{metric}",
                   f"scatter_{metric}",
                   f"{metric} score (x) against {first_name} accuracy (y), one point per model; one row "
                   "per target, without PED (left, open circles) and with PED (right, filled). Star: the "
                   "top-scored model; ring: the most accurate; both named under the panel. Crosses: "
                   "scores saturated at the metric's maximum (tied).")
    if study.params.sensitivity is not None:
        for metric in study.params.sensitivity.metrics:
            figure(sensitivity_heatmap(evaluation, scores, metric, first_truth), f"sensitivity_{metric}",
                   f"sensitivity_{metric}",
                   f"Mean weighted tau over targets (against {first_name}, all models) of {metric} + PED "
                   "for each nsigma (rows) and time_step (columns); outlined: the paper's setting "
                   f"(nsigma {PAPER_SETTING[0]}, time_step {PAPER_SETTING[1]}). The title gives the mean "
                   "weighted tau without PED.")
    chosen = trajectory_models(accuracies[first_truth], study.models, study.datasets)
    if chosen is not None:
        target, worst, best, n_ranked = chosen
        for label, model in (("best", best), ("worst", worst)):
            train = study.features(model, target, "train")
            x = train["features"].astype(np.float64)
            reference = scoring_reference(study, model, target, study.params.reference.mode)
            result = ped_module.decline(x, train["labels"], reference,
                                        **{**ped_module.DEFAULTS, **study.params.ped})
            classes = study.source(target).classes
            figure(ped_trajectory(result, x, train["labels"], reference,
                                  class_names=[classes[c] for c in result.classes],
                                  title=f"PED on {target}: {model}, the {label} of {n_ranked} models by {first_name}"),
                   f"trajectory_{target}_{label}", f"trajectory_{label}",
                   f"PED on {target} for {model}, the {label} of {n_ranked} models by {first_name}: its "
                   "classes' train features before (left) and after PED (right) in the 2-D PCA plane of "
                   "the standardised features (one colour and marker per class); large markers: the "
                   "class means; arrows: each class mean's displacement under PED.")
    if ev.paper_table and comparison.exists():
        table = pd.read_csv(comparison)
        for column in ("ours", "paper", "difference"):
            wide = table.pivot_table(index="method", columns="dataset", values=column, sort=False)
            save_table(wide, out / f"paper_comparison_{column}", written, f"paper_comparison_{column}",
                       f"Weighted tau against the published accuracies: {column} "
                       "(ours, the paper's, ours minus the paper's), per method and dataset.")
    if ports.exists():
        table = records.read_csv(ports).set_index("model").drop(columns=["quantized", "seconds"], errors="ignore")
        save_table(table, out / "ports", written, "ports",
                   "Each float PyTorch port against its original runtime (TFLite) on the same images: "
                   "median and minimum cosine similarity of the pooled features, top-1 agreement of "
                   "the source classifier (empty: no classifier). Each check's seconds: "
                   f"{study.output.name}/ports.csv under results/.", digits=4, missing="")
    _write_index(study, out, written, key)
    timed: dict[str, tuple[list[Path], str]] = {}
    save_figure(runtime_bars(scores), timing / "runtime", timed, "runtime",
                "Median seconds per score of one (model, target), without and with PED (PED's own time "
                "included), log scale. Timing: varies from run to run.", formats=plots.formats, dpi=plots.dpi)
    save_table(runtime_table(scores), timing / "runtime", timed, "runtime_table",
               "The runtime figure's numbers (median seconds). Timing: varies from run to run.", digits=4)
    # last: a run stopped before this point leaves the figures stale
    records.atomic_write(made, lambda tmp: tmp.write_text(json.dumps(sorted(written), indent=1)))
    records.write_record(made, key, params=study.params.as_dict(), seed=study.params.seed)
    return {k: _viewable_first(paths)[0] for k, (paths, _) in {**written, **timed}.items()}


def _untimed_key(table: pd.DataFrame) -> str:
    """The content key of a table without its timing column."""
    return records.content_key(table.drop(columns=["seconds"], errors="ignore").to_csv())


def _viewable_first(paths: list[Path]) -> list[Path]:
    """The file a notebook or a Markdown viewer shows (PNG, Markdown) first, then the others."""
    return sorted(paths, key=lambda p: p.suffix not in (".png", ".md"))


def _write_index(study: "Study", out: Path, written: dict, key: str) -> None:
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
    records.write_record(out / "index.md", key, params=study.params.as_dict(), seed=study.params.seed,
                         inputs={k: {"files": [p.name for p in _viewable_first(paths)], "caption": caption}
                                 for k, (paths, caption) in written.items()}, extra={"files": files})


def figure_index(study: "Study") -> pd.DataFrame:
    """The figures and tables :func:`figures` wrote, in the study's order: name, file (the
    viewable one: PNG or Markdown), files (every format), caption."""
    record = records.read_record(study.figures_dir / "index.md") or {}
    return pd.DataFrame([dict(name=name, file=entry["files"][0], files=entry["files"], caption=entry["caption"])
                         for name, entry in (record.get("inputs") or {}).items()],
                        columns=["name", "file", "files", "caption"])
