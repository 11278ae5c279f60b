"""Stage: every plot and table of the study into ``figures/<study>/``, each with a caption,
and ``index.md`` listing them (the plots themselves are :mod:`pedlib.plots`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .. import ped as ped_module, records
from ..groundtruth import label as truth_label
from ..plots import (logme_definition_table, models_ranked, ped_trajectory, runtime_bars, runtime_table, save_figure,
                     save_table, score_scatter, sensitivity_heatmap, trajectory_models, wtau_bars, wtau_table)
from . import groundtruth
from .score import scoring_reference

if TYPE_CHECKING:
    from ..study import Study

__all__ = ["figures", "figure_index"]


def figures(study: "Study") -> dict[str, Path]:
    """Write every figure and table of ``study`` with a
    caption each, and ``index.md`` listing them; returns name -> path (:func:`figure_index`
    gives the captions)."""
    out = study.figures_dir
    out.mkdir(parents=True, exist_ok=True)
    scores = pd.read_csv(study.output / "scores.csv", keep_default_na=False, na_values=[""])
    evaluation = pd.read_csv(study.output / "evaluation.csv", keep_default_na=False, na_values=[""])
    accuracies = groundtruth.accuracies(study)
    comparison = study.output / "paper_comparison.csv"
    ports = study.output / "ports.csv"
    key = records.content_key("figures", records.content_key(scores.to_csv()),
                              records.content_key(evaluation.to_csv()),
                              {n: records.content_key(t.to_csv()) for n, t in accuracies.items()},
                              comparison.read_text() if comparison.exists() else None,
                              ports.read_text() if ports.exists() else None,
                              study.params.as_dict(), records.code_version("plots", "stages.figures"))
    if records.is_fresh(out / "index.md", key):
        listed = records.read_record(out / "index.md")["inputs"]
        if all((out / entry["file"]).exists() for entry in listed.values()):
            return {label: out / entry["file"] for label, entry in listed.items()}
    written: dict[str, tuple[Path, str]] = {}
    ci = (f"{study.params.evaluation.level:.0%} percentile bootstrap over models "
          f"({study.params.evaluation.bootstrap} resamples; the mean over targets resamples models "
          "jointly across targets)")
    for truth in accuracies:
        name = truth_label(truth)
        for pool in study.params.pools:
            table = wtau_table(evaluation, truth, pool)
            if table.empty:
                continue
            n = models_ranked(evaluation, truth, pool)
            save_table(table, out / f"wtau_{truth}_{pool}", written, f"wtau_{truth}_{pool}",
                        f"Weighted Kendall's tau of each method's ranking of {n} models (pool {pool}) "
                        f"against {name}, per target and the mean over targets; each metric plain and "
                        f"with PED, baselines (knn, dim) included. Intervals ({ci}) are in the CSV.")
            save_figure(wtau_bars(evaluation, truth, pool), out / f"wtau_{truth}_{pool}.png", written,
                  f"wtau_bars_{truth}_{pool}", f"The table above as bars: grey without PED, orange with "
                  f"PED, hatched baselines; {n} models (pool {pool}) against {name}; error bars: {ci}.")
        variants = ["plain", "ped"] + [f"ped:ref={m}" for m in study.params.reference.ablation]
        ablation = wtau_table(evaluation, truth, "all", variants=variants)
        if not ablation.empty:
            save_table(ablation, out / f"reference_ablation_{truth}", written, f"reference_ablation_{truth}",
                        f"PED's reference sample against {name} (all models): plain, PED with the study's "
                        "reference (`+ped`: the model's source data where the study has it), the other "
                        "targets pooled (`ref=others`), the target itself (`ref=none`).")
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
            save_figure(score_scatter(scores, accuracies[first_truth], metric, first_name),
                  out / f"scatter_{metric}.png", written, f"scatter_{metric}",
                  f"{metric} score (x) against {first_name} accuracy (y), one point per model, per "
                  "target; top row without PED, bottom row with PED; the top-scored and the most "
                  "accurate model are named.")
    if study.params.sensitivity is not None:
        for metric in study.params.sensitivity.metrics:
            save_figure(sensitivity_heatmap(evaluation, scores, metric, first_truth),
                  out / f"sensitivity_{metric}.png", written, f"sensitivity_{metric}",
                  f"Mean weighted tau over targets (against {first_name}, all models) of {metric} + PED "
                  "for each nsigma and time_step; the paper's setting is nsigma 0.6, time_step 0.1.")
    if study.params.evaluation.paper_table and comparison.exists():
        table = pd.read_csv(comparison)
        for column in ("ours", "paper", "difference"):
            wide = table.pivot_table(index="method", columns="dataset", values=column, sort=False)
            save_table(wide, out / f"paper_comparison_{column}", written, f"paper_comparison_{column}",
                        f"Weighted tau against the published accuracies: {column} "
                        "(ours, the paper's, ours minus the paper's), per method and dataset.")
    if ports.exists():
        table = pd.read_csv(ports, keep_default_na=False, na_values=[""]).set_index("model")
        save_table(table.drop(columns=["quantized"], errors="ignore"), out / "ports", written, "ports",
                    "Each float PyTorch port against its original runtime (TFLite) on the same images: "
                    "median and minimum cosine similarity of the pooled features, top-1 agreement of "
                    "the source classifier (NaN: no classifier), seconds (timing: varies run to run).",
                    digits=4)
    save_figure(runtime_bars(scores), out / "runtime.png", written, "runtime",
          "Median seconds per score of one (model, target), without and with PED (PED's own time "
          "included). Timing: varies from run to run.")
    save_table(runtime_table(scores), out / "runtime", written, "runtime_table",
                "The runtime figure's numbers (median seconds). Timing: varies from run to run.", digits=4)
    chosen = trajectory_models(accuracies[first_truth], study.models, study.datasets)
    if chosen is not None:
        target, worst, best, n_ranked = chosen
        for label, model in (("worst", worst), ("best", best)):
            train = study.features(model, target, "train")
            x = train["features"].astype(np.float64)
            reference = scoring_reference(study, model, target, study.params.reference.mode)
            result = ped_module.decline(x, train["labels"], reference,
                                        **{**ped_module.DEFAULTS, **study.params.ped})
            classes = study.source(target).classes
            save_figure(ped_trajectory(result, x, train["labels"], reference, class_names=[classes[c] for c in result.classes],
                                 title=f"PED on {target}: {model}, the {label} of {n_ranked} models by {first_name}"),
                  out / f"trajectory_{target}_{label}.png", written, f"trajectory_{label}",
                  f"PED on {target} for {model}, the {label} model by {first_name}: its classes' train "
                  "features before and after PED in the 2-D PCA plane of the standardised features; "
                  "arrows: each class mean's displacement.")
    index = "\n".join(f"- [{path.name}]({path.name}): {caption}" for path, caption in written.values())
    records.atomic_write(out / "index.md", lambda tmp: tmp.write_text(
        f"# Figures and tables of the {study.params.study} study\n\n{index}\n"))
    records.write_record(out / "index.md", key, params=study.params.as_dict(), seed=study.params.seed,
                         inputs={k: {"file": path.name, "caption": caption} for k, (path, caption) in written.items()})
    return {k: path for k, (path, _) in written.items()}


def figure_index(study: "Study") -> pd.DataFrame:
    """The figures and tables :func:`figures` wrote: name, file, caption."""
    record = records.read_record(study.figures_dir / "index.md") or {}
    return pd.DataFrame([dict(name=name, file=entry["file"], caption=entry["caption"])
                         for name, entry in (record.get("inputs") or {}).items()],
                        columns=["name", "file", "caption"])
